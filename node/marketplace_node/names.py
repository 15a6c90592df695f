"""Who owns a name, which package holds each version, what is yanked: one pure rule.

Every node holds, per name, the author-signed packages and the signed owner
records it has accepted, and computes the name's state with `resolve`, a
function of that *set* alone (never of arrival order), so nodes that hold the
same set agree, whatever order gossip, sync or a healed partition delivered it in.

The rule: sort the entries by `(created, hash)` and fold them; within one
second, a `yank`/`unyank` comes after the packages and ownership records, so
yanking a version published in the same second is no coin toss.

* A package whose name has no owner yet *claims* the name: its publisher
  becomes the only owner. First claim wins; ties by hash.
* A package is valid only if its publisher owns the name at that point, and
  only if its version is still free: a version, once held, never changes
  (other bytes get `version_exists`; a non-owner gets `name_taken`).
* A record is valid only if its signer owns the name at that point:
  `add_owner`, `remove_owner` (never the last owner), `transfer` (the
  subject becomes the only owner), `yank` and `unyank` of an existing version.

Timestamps are the signer's and can lie. A node accepts a package or record
from a client only if its `created` lies within now ± `CLOCK_SKEW_SECONDS`,
so a backdated entry beats only entries made less than that window before
it: a claim settles once it is older than the window. See docs/packages.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from marketplace_protocol import errors

from marketplace_node.model import NameRecord, PackageMeta, RecordAction

NAME_TAKEN = "name_taken"
VERSION_EXISTS = "version_exists"
NOT_OWNER = "not_owner"
NO_SUCH_VERSION = "no_such_version"
LAST_OWNER = "last_owner"

Entry = PackageMeta | NameRecord
_ERRORS: dict[str, type[errors.NodeError]] = {
    NAME_TAKEN: errors.NameTaken,
    NOT_OWNER: errors.NameTaken,
    VERSION_EXISTS: errors.VersionExists,
    LAST_OWNER: errors.LastOwner,
    NO_SUCH_VERSION: errors.NoSuchVersion,
}


def refusal(reason: str, entry: Entry) -> errors.NodeError:
    """The typed error a client or peer gets for an entry refused for `reason`."""
    message = {
        NAME_TAKEN: "the name belongs to other keys",
        NOT_OWNER: "the signer does not own the name",
        VERSION_EXISTS: "this version of the name is already published with other content",
        LAST_OWNER: "a name keeps at least one owner",
        NO_SUCH_VERSION: "no such version of the name",
    }[reason]
    return _ERRORS[reason](message, details={"name": entry.name, "reason": reason})


_AFTER_VERSIONS = frozenset({RecordAction.YANK, RecordAction.UNYANK})


def entry_key(entry: Entry) -> tuple[int, bool, str]:
    """The total order of the fold: signer's time, then (within a second) version records
    after what makes versions, then the hash of the signed bytes.

    `created` has one-second resolution, so an owner who publishes and yanks in the same
    second would otherwise see the yank refused `no_such_version` when its hash sorts first.
    """
    assert entry.created is not None  # node-signed packages never enter the fold
    late = isinstance(entry, NameRecord) and entry.action in _AFTER_VERSIONS
    return entry.created, late, hashlib.sha256(entry.signed_bytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class NameState:
    owners: frozenset[str] = frozenset()
    versions: Mapping[str, str] = field(default_factory=dict)  # version -> package id
    yanked: frozenset[str] = frozenset()
    refused: Mapping[str, str] = field(default_factory=dict)  # entry id -> reason


def resolve(entries: Iterable[Entry]) -> NameState:
    """The state of one name from its packages and records (order-independent)."""
    owners: frozenset[str] = frozenset()
    versions: dict[str, str] = {}
    digests: dict[str, str] = {}
    yanked: set[str] = set()
    refused: dict[str, str] = {}
    for entry in sorted(entries, key=entry_key):
        if isinstance(entry, PackageMeta):
            if not owners:
                owners = frozenset({entry.publisher})
            if entry.publisher not in owners:
                refused[entry.id] = NAME_TAKEN
            elif entry.version in versions:
                if versions[entry.version] != entry.id:
                    refused[entry.id] = VERSION_EXISTS
            else:
                versions[entry.version], digests[entry.version] = entry.id, entry.digest
            continue
        reason = _record_refusal(entry, owners, versions)
        if reason is not None:
            refused[entry.id] = reason
            continue
        owners = _apply_record(entry, owners, yanked)
    return NameState(owners, versions, frozenset(yanked), refused)


def _record_refusal(
    record: NameRecord, owners: frozenset[str], versions: Mapping[str, str]
) -> str | None:
    if record.signer not in owners:
        return NOT_OWNER
    if record.action in (RecordAction.YANK, RecordAction.UNYANK):
        return None if record.subject in versions else NO_SUCH_VERSION
    if record.action is RecordAction.REMOVE_OWNER and owners == {record.subject}:
        return LAST_OWNER
    return None


def _apply_record(record: NameRecord, owners: frozenset[str], yanked: set[str]) -> frozenset[str]:
    match record.action:
        case RecordAction.ADD_OWNER:
            return owners | {record.subject}
        case RecordAction.REMOVE_OWNER:
            return owners - {record.subject}
        case RecordAction.TRANSFER:
            return frozenset({record.subject})
        case RecordAction.YANK:
            yanked.add(record.subject)
        case RecordAction.UNYANK:
            yanked.discard(record.subject)
    return owners


@dataclass
class _Name:
    entries: dict[str, Entry] = field(default_factory=dict)
    state: NameState = field(default_factory=NameState)


class NameRegistry:
    """The entries and resolved state of every name a node holds (in memory, no I/O)."""

    def __init__(self) -> None:
        self._names: dict[str, _Name] = {}

    def state(self, name: str) -> NameState:
        held = self._names.get(name)
        return held.state if held is not None else NameState()

    def names(self) -> list[str]:
        return list(self._names)

    def holds(self, entry: Entry) -> bool:
        held = self._names.get(entry.name)
        return held is not None and entry.id in held.entries

    def verdict(self, entry: Entry) -> str | None:
        """Why `entry` would be refused next to what we hold (None: it would be valid)."""
        held = self._names.get(entry.name)
        entries = [*(held.entries.values() if held else ()), entry]
        return resolve(entries).refused.get(entry.id)

    def add(self, entry: Entry) -> NameState:
        """Hold `entry` and return the name's new state."""
        held = self._names.setdefault(entry.name, _Name())
        held.entries[entry.id] = entry
        held.state = resolve(held.entries.values())
        return held.state

    def load(self, entries: Iterable[Entry]) -> None:
        """Hold many entries at once (start-up), resolving each name once."""
        touched: set[str] = set()
        for entry in entries:
            self._names.setdefault(entry.name, _Name()).entries[entry.id] = entry
            touched.add(entry.name)
        for name in touched:
            held = self._names[name]
            held.state = resolve(held.entries.values())

    def visible(self, meta: PackageMeta, package_id: str) -> bool:
        """An author-signed package is visible while it holds its version; a node-signed one
        (earlier releases) always: it stays readable, marked, but never owns a name.
        `package_id` is `meta.id` as the caller keeps it: recomputing it (a canonical dump
        and a hash) on every look-up cost a repair pass over 10,000 packages 175 ms of the
        event loop for its look-ups alone (14 ms now; every 2-10 s on every node)."""
        if not meta.author_signed:
            return True
        return self.state(meta.name).versions.get(meta.version) == package_id
