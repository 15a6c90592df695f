"""The effective policy of a fleet: a pure function of the BanLists, RateLimitPolicies and
the fleet's replication setting.

No I/O, no clock: `now` is a parameter. The output is in a deterministic
order, so the same inputs always hash the same (see `policy.versioning`).

Bans (docs/policy.md, "Bans"):
- every BanList selecting the fleet contributes, the operator's auto list too;
- an entry whose expiry is at or before `now` is dropped;
- for one target (a peer id, or a network in canonical form) the longest-lived
  ban wins ("until lifted" beats any date); ties go to the first source name;
- an `allow` entry in force lifts every ban of the same target.
Takedowns (entries about content: a digest, `name@version`, a name, a publisher) follow
the same rules and go to the document's `blocks`, peers and networks to its `bans`.

Limits (docs/policy.md, "Rate limits"): each leaf — one operation's per-peer
limit, the global limit, the pending-query cap, each escalation field — comes
from the first policy, in precedence order, that sets it; otherwise the node
default. Precedence: higher `priority`; then a policy naming the fleet before
one selecting every fleet (`*`); then name in ascending order.

Replication and peering: the MarketplaceFleet's `spec.replication` and `spec.peering`,
carried as they are (None when the fleet has no MarketplaceFleet yet, or no peering:
the nodes keep their own settings, and peer with their own fleet only).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from marketplace_protocol.admin import BanEntry, ContentBlock, Peering, RateLimits, Replication
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from marketplace_operator.model.banlist import Action, BanList, BanListEntry, canonical_cidr
from marketplace_operator.model.ratelimitpolicy import RateLimitPolicy

_SOURCE_LIMIT = 256


class PolicyContent(BaseModel):
    """What a fleet's nodes enforce, without the version stamp: bans, rate limits and the
    replication setting."""

    model_config = ConfigDict(frozen=True)

    bans: tuple[BanEntry, ...] = ()
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    replication: Replication | None = None
    blocks: tuple[ContentBlock, ...] = ()
    peering: Peering | None = None


class ProblemKind(enum.StrEnum):
    LIMITS_CONFLICT = "LimitsConflict"
    INVALID_OBJECT = "InvalidObject"


@dataclass(frozen=True)
class Problem:
    """Input that passed the schema but cannot be applied, blamed on the objects involved."""

    kind: ProblemKind
    message: str
    objects: tuple[str, ...]  # names of the RateLimitPolicies (or BanLists) at fault


@dataclass(frozen=True)
class Effective:
    """The result: the content (None when a problem prevents applying) and what selected it."""

    content: PolicyContent | None
    problems: tuple[Problem, ...] = ()
    ban_lists: tuple[str, ...] = ()  # names of the BanLists that selected the fleet
    rate_limit_policies: tuple[str, ...] = ()  # names of the policies that selected it


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class _Candidate:
    entry: BanListEntry
    expiry: datetime | None
    source: str

    def rank(self) -> tuple[int, float, str, str]:
        """Smaller is better: until-lifted first, then the latest expiry, then source, reason."""
        if self.expiry is None:
            return (0, 0.0, self.source, self.entry.reason)
        return (1, -self.expiry.timestamp(), self.source, self.entry.reason)


def _candidates(fleet: str, banlists: Iterable[BanList], now: datetime) -> Iterable[_Candidate]:
    for banlist in banlists:
        if not banlist.spec.selects(fleet):
            continue
        source = f"banlist/{banlist.name}"[:_SOURCE_LIMIT]
        created = as_utc(banlist.created)
        for entry in banlist.spec.entries:
            expiry = entry.expiry(created)
            expiry = None if expiry is None else as_utc(expiry)
            if expiry is None or expiry > now:
                yield _Candidate(entry, expiry, source)


def _to_wire(candidate: _Candidate) -> BanEntry:
    entry = candidate.entry
    return BanEntry(
        peer_id=entry.peer_id,
        cidr=None if entry.cidr is None else canonical_cidr(entry.cidr),
        reason=entry.reason,
        expires_at=candidate.expiry,
        source=candidate.source,
    )


def _to_block(candidate: _Candidate) -> ContentBlock:
    entry = candidate.entry
    return ContentBlock(
        digest=entry.digest,
        package=entry.package,
        name=entry.name,
        publisher=entry.publisher,
        reason=entry.reason,
        expires_at=candidate.expiry,
        source=candidate.source,
    )


def _in_force(fleet: str, banlists: Iterable[BanList], now: datetime) -> list[_Candidate]:
    """One entry per target (the longest-lived), allows applied, sorted by target."""
    now = as_utc(now)
    best: dict[str, _Candidate] = {}
    allowed: set[str] = set()
    for candidate in _candidates(fleet, banlists, now):
        target = candidate.entry.target
        if candidate.entry.action is Action.ALLOW:
            allowed.add(target)
        elif target not in best or candidate.rank() < best[target].rank():
            best[target] = candidate
    return [best[t] for t in sorted(best) if t not in allowed]


def effective_bans(fleet: str, banlists: Iterable[BanList], now: datetime) -> tuple[BanEntry, ...]:
    """The union of the bans of peers and networks in force for `fleet`, one per target."""
    return tuple(_to_wire(c) for c in _in_force(fleet, banlists, now) if not c.entry.takedown)


def effective_blocks(
    fleet: str, banlists: Iterable[BanList], now: datetime
) -> tuple[ContentBlock, ...]:
    """The takedowns in force for `fleet`, one per target, with their provenance."""
    return tuple(_to_block(c) for c in _in_force(fleet, banlists, now) if c.entry.takedown)


def precedence_key(policy: RateLimitPolicy) -> tuple[int, int, str]:
    """Sort key, first = strongest: priority desc, named fleet before `*`, name asc."""
    return (-policy.spec.priority, 0 if policy.spec.fleet != "*" else 1, policy.name)


def _leaves(policy: RateLimitPolicy) -> dict[str, Any]:
    """The leaves a policy sets, by path (the wire model's aliases), as wire values."""
    spec = policy.spec
    leaves: dict[str, Any] = {}
    for op, limit in spec.per_peer:
        if limit is not None:
            leaves[f"perPeer.{op}"] = limit.model_dump()
    if spec.per_publisher is not None:
        leaves["perPublisher"] = spec.per_publisher.model_dump()
    if spec.global_ is not None:
        leaves["global"] = spec.global_.model_dump()
    if spec.max_pending_queries is not None:
        leaves["maxPendingQueries"] = spec.max_pending_queries
    for name, value in spec.escalation.model_dump(by_alias=True).items():
        if value is not None:
            leaves[f"escalation.{name}"] = value
    return leaves


def _set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def merge_limits(
    fleet: str, policies: Iterable[RateLimitPolicy]
) -> tuple[RateLimits | None, dict[str, str], tuple[Problem, ...]]:
    """Limits merged leaf by leaf by precedence over node defaults; a conflict is a Problem."""
    selected = sorted((p for p in policies if p.spec.selects(fleet)), key=precedence_key)
    merged: dict[str, Any] = RateLimits().model_dump(mode="json", by_alias=True)
    sources: dict[str, str] = {}
    for policy in selected:
        for path, value in _leaves(policy).items():
            if path not in sources:
                sources[path] = policy.name
                _set_path(merged, path, value)
    try:
        return RateLimits.model_validate(merged), sources, ()
    except ValidationError as exc:
        blamed = tuple(sorted({n for p, n in sources.items() if p.startswith("escalation.")}))
        message = "; ".join(err["msg"] for err in exc.errors())
        problem = Problem(
            ProblemKind.LIMITS_CONFLICT,
            f"merged limits of fleet {fleet!r} are invalid: {message}",
            blamed or tuple(sorted(set(sources.values()))),
        )
        return None, sources, (problem,)


def effective_policy(
    fleet: str,
    *,
    banlists: Sequence[BanList],
    ratelimitpolicies: Sequence[RateLimitPolicy],
    now: datetime,
    replication: Replication | None = None,
    peering: Peering | None = None,
) -> Effective:
    """The policy `fleet`'s nodes should enforce at `now`, or the problems preventing it.

    `banlists` includes the operator's auto BanList of the fleet: automatic
    bans are ordinary entries (with provenance), so a user's allow entry lifts
    them and a user's longer ban pins them.
    """
    bans = effective_bans(fleet, banlists, now)
    blocks = effective_blocks(fleet, banlists, now)
    limits, _, problems = merge_limits(fleet, ratelimitpolicies)
    content = (
        None
        if limits is None
        else PolicyContent(
            bans=bans,
            rate_limits=limits,
            replication=replication,
            blocks=blocks,
            peering=peering,
        )
    )
    return Effective(
        content=content,
        problems=problems,
        ban_lists=tuple(sorted(b.name for b in banlists if b.spec.selects(fleet))),
        rate_limit_policies=tuple(
            sorted(p.name for p in ratelimitpolicies if p.spec.selects(fleet))
        ),
    )
