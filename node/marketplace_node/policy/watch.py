"""Reads the mounted policy directory at start and again whenever its files change, in the
node's one loop over mounted files (`poll_forever`, which also follows the TLS files).

The fleet ConfigMap is mounted as a directory: `policy.json` (or
`policy.json.gz` when large, or `policy.parts.json` naming the parts
`policy.json.gz.<i>` from the shard ConfigMaps when too large for one; see
marketplace_protocol/parts.py) and `members.json`. The kubelet updates it by
writing a new timestamped directory and swapping the `..data` symlink, so
the visible files are symlinks whose target changes: `os.stat` follows them,
and a change of (device, inode, mtime, size) is the signal. Polling once a
second costs one `stat` per file and needs no inotify dependency; the push
through the admin API is the fast path, this is the restart-safe one.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, Protocol, TypeVar

import pydantic
from marketplace_protocol import errors
from marketplace_protocol.admin import Members, PolicyDocument
from marketplace_protocol.parts import (
    MANIFEST_FILE,
    PolicyManifest,
    TornParts,
    join,
    part_name,
)

# The first one present wins. The single-file keys come first: an operator downgraded to a
# version without shards writes them and leaves a manifest behind.
POLICY_FILES: Final = ("policy.json", "policy.json.gz", MANIFEST_FILE)
POLICY_PREFIX: Final = "policy."
MEMBERS_FILE: Final = "members.json"
MAX_DOCUMENT_BYTES: Final = 64 * 1024 * 1024
"""Largest (decompressed) policy or members document read: 50,000 bans are ~8 MB."""
MAX_MANIFEST_BYTES: Final = 64 * 1024

logger = logging.getLogger(__name__)

Signature = tuple[int, int, int, int] | None
M = TypeVar("M", bound=pydantic.BaseModel)
D = TypeVar("D")


def signature(path: Path) -> Signature:
    """What changes when a file (or the symlink chain to it) is replaced; None if absent."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def policy_signature(directory: Path) -> tuple[tuple[str, Signature], ...] | None:
    """The signatures of every `policy.*` file (manifest and parts change separately);
    None when there is none."""
    try:
        found = sorted(n for n in os.listdir(directory) if n.startswith(POLICY_PREFIX))
    except FileNotFoundError:
        return None
    sigs = tuple((name, signature(directory / name)) for name in found)
    return sigs if any(sig is not None for _, sig in sigs) else None


def gunzip_bounded(raw: bytes, limit: int, *, what: str) -> bytes:
    """Inflate gzip data, refusing more than `limit` bytes of output (compression bombs)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise errors.InvalidInput(f"{what} is not valid gzip") from exc
    if len(data) > limit:
        raise errors.PayloadTooLarge(f"{what} inflates beyond {limit} bytes")
    return data


def read_bounded(path: Path, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """A file's bytes, gunzipped when named `.gz`, refusing more than `limit`."""
    if path.stat().st_size > limit:
        raise errors.PayloadTooLarge(f"{path.name} exceeds {limit} bytes")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        return gunzip_bounded(raw, limit, what=path.name)
    if len(raw) > limit:
        raise errors.PayloadTooLarge(f"{path.name} exceeds {limit} bytes")
    return raw


def policy_file(directory: Path) -> Path | None:
    for name in POLICY_FILES:
        path = directory / name
        if path.exists():
            return path
    return None


def read_policy(directory: Path) -> PolicyDocument | None:
    """The mounted policy document, None if there is none yet; `InvalidInput` if broken,
    `TornParts` if its parts do not match their manifest yet."""
    path = policy_file(directory)
    if path is None:
        return None
    if path.name == MANIFEST_FILE:
        return read_parts(directory, _parse(PolicyManifest, path, limit=MAX_MANIFEST_BYTES))
    return _parse(PolicyDocument, path)


def read_parts(directory: Path, manifest: PolicyManifest) -> PolicyDocument:
    """Join the manifest's parts in order, check them whole, gunzip within the cap."""
    if manifest.size > MAX_DOCUMENT_BYTES:
        raise errors.PayloadTooLarge(f"{MANIFEST_FILE} names {manifest.size} bytes of parts")
    parts: list[bytes | None] = []
    for index in range(1, manifest.parts + 1):
        path = directory / part_name(index)
        try:
            parts.append(read_bounded(path, limit=manifest.size))
        except FileNotFoundError:
            parts.append(None)  # its shard ConfigMap not created or not synced yet
        except errors.PayloadTooLarge as exc:
            raise TornParts(f"{path.name} is larger than the manifest says") from exc
    raw = gunzip_bounded(join(manifest, parts), MAX_DOCUMENT_BYTES, what=MANIFEST_FILE)
    try:
        doc = PolicyDocument.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        raise errors.InvalidInput(f"policy parts: {exc.error_count()} validation errors") from exc
    if doc.version != manifest.version:
        raise errors.InvalidInput(
            f"policy parts hold version {doc.version}, the manifest says {manifest.version}"
        )
    return doc


def read_members(directory: Path) -> Members | None:
    path = directory / MEMBERS_FILE
    if not path.exists():
        return None
    return _parse(Members, path)


def _parse(model: type[M], path: Path, *, limit: int = MAX_DOCUMENT_BYTES) -> M:
    try:
        return model.model_validate_json(read_bounded(path, limit))
    except pydantic.ValidationError as exc:
        raise errors.InvalidInput(f"{path.name}: {exc.error_count()} validation errors") from exc


class PolicyDirWatcher:
    """Polls the directory; calls `on_policy` / `on_members` with each new valid document.

    A broken or stale file is logged and skipped: the node keeps the policy it
    has, since a newer one is only ever a push or a kubelet sync away.
    """

    def __init__(
        self,
        directory: Path,
        *,
        on_policy: Callable[[PolicyDocument], object],
        on_members: Callable[[Members], object] | None = None,
        period: float = 1.0,
    ) -> None:
        self._directory = directory
        self._on_policy = on_policy
        self._on_members = on_members
        self._period = period
        self._seen: dict[str, object] = {}

    async def poll_once(self) -> bool:
        """Check once; True if a changed document was handed to a callback."""
        changed = False
        if self._changed("policy", policy_signature(self._directory)):
            changed |= await self._deliver("policy", read_policy, self._on_policy)
        members = signature(self._directory / MEMBERS_FILE)
        if self._on_members is not None and self._changed("members", members):
            changed |= await self._deliver("members", read_members, self._on_members)
        return changed

    def _changed(self, key: str, sig: object) -> bool:
        if sig is None or self._seen.get(key) == sig:
            return False
        self._seen[key] = sig
        return True

    async def _deliver(
        self, key: str, read: Callable[[Path], D | None], callback: Callable[[D], object]
    ) -> bool:
        try:
            doc = await asyncio.to_thread(read, self._directory)
            if doc is None:
                return False
            result = callback(doc)
            if inspect.isawaitable(result):
                await result
        except OSError as exc:
            self._seen.pop(key, None)  # maybe caught mid-swap: read it again next time
            logger.warning("%s unreadable: %s", key, exc.strerror)
            return False
        except TornParts as exc:
            # Parts and manifest from different writes: the kubelet's next refresh of the
            # lagging ConfigMap changes a file, and the next poll reads them again.
            logger.debug("%s not applied yet: %s", key, exc)
            return False
        except errors.StalePolicy as exc:
            logger.info("%s not applied: %s", key, exc.message)
            return False
        except errors.NodeError as exc:  # invalid, too large, or a conflicting version
            logger.warning("%s not applied (%s): %s", key, exc.code, exc.message)
            return False
        logger.info("%s taken from %s", key, self._directory)
        return True

    async def run(self) -> None:
        """Poll until cancelled (`poll_forever` with this watcher alone)."""
        await poll_forever([self], period=self._period)


class Poller(Protocol):
    """Something that looks at mounted files and takes in what changed."""

    async def poll_once(self) -> bool: ...


async def poll_forever(pollers: Sequence[Poller], *, period: float = 1.0) -> None:
    """The node's one loop over mounted files (policy directory, TLS files): each poller
    once a `period`, until cancelled (run it as a background task; cancel it on stop).

    A failure of one poll is logged and the next goes ahead: a bug in a callback must
    not end the watching for the rest of the process.
    """
    while True:
        for poller in pollers:
            try:
                await poller.poll_once()
            except Exception:
                logger.exception("polling %s failed", type(poller).__name__)
        await asyncio.sleep(period)
