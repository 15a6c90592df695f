"""Local bans → the fleet's automatic BanList entries, with provenance. Pure.

Each node bans abusers on its own; the operator collects every node's local
bans and turns those reported by at least `threshold` nodes (default 1, never
more than the fleet has) into entries of the operator-owned BanList
`<fleet>-auto`, so one node's verdict protects the whole fleet.

Rules (docs/policy.md, "Automatic bans"):
- an entry's expiry is the latest expiry any reporting node gives it; a node
  ban "until lifted" becomes `now + max_ttl`, so an auto ban always ends;
- provenance (nodes, first/last seen, reasons, offences) merges with what the
  previous auto list said, so it survives nodes forgetting or restarting, and
  offence counts never go down;
- a previous entry nobody reports any more stays until it expires;
- bounded: expired entries go first, then the list keeps the `capacity`
  entries with the latest expiry (ties: target order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from marketplace_protocol.admin import LocalBan

from marketplace_operator.model.banlist import (
    MAX_ENTRIES_PER_OBJECT,
    BanListEntry,
    Provenance,
    canonical_cidr,
)
from marketplace_operator.policy.effective import as_utc

DEFAULT_MAX_TTL: Final = timedelta(hours=24)
_MAX_NODES: Final = 16
_MAX_REASONS: Final = 8


@dataclass(frozen=True)
class NodeReport:
    """The local bans one node answered with (`GET /admin/v1/bans/local`)."""

    node: str
    bans: Sequence[LocalBan]


@dataclass(frozen=True)
class _Sighting:
    node: str
    ban: LocalBan
    expiry: datetime


def _target(peer_id: str | None, cidr: str | None) -> str:
    return f"peer:{peer_id}" if peer_id is not None else f"cidr:{canonical_cidr(cidr or '')}"


def _sightings(
    reports: Iterable[NodeReport], now: datetime, max_ttl: timedelta
) -> dict[str, list[_Sighting]]:
    found: dict[str, list[_Sighting]] = {}
    for report in reports:
        for ban in report.bans:
            if ban.peer_id is None and ban.cidr is None:
                continue
            expiry = now + max_ttl if ban.expires_at is None else as_utc(ban.expires_at)
            expiry = min(expiry, now + max_ttl)
            if expiry <= now:
                continue
            found.setdefault(_target(ban.peer_id, ban.cidr), []).append(
                _Sighting(report.node, ban, expiry)
            )
    return found


def _first_seen(prov: Provenance | None, seen: Sequence[_Sighting]) -> datetime:
    times = [as_utc(s.ban.banned_at) for s in seen]
    if prov is not None and prov.first_seen is not None:
        times.append(as_utc(prov.first_seen))
    return min(times)


def _merge(target: str, seen: Sequence[_Sighting], previous: BanListEntry | None) -> BanListEntry:
    prov = None if previous is None else previous.provenance
    nodes = {s.node for s in seen} | set(prov.nodes if prov else ())
    reasons = sorted(
        {s.ban.reason for s in seen if s.ban.reason} | set(prov.reasons if prov else ())
    )
    latest = max(as_utc(s.ban.banned_at) for s in seen)
    if prov is not None and prov.last_seen is not None:
        latest = max(latest, as_utc(prov.last_seen))
    offences = sum(s.ban.offences for s in seen)
    expiry = max(s.expiry for s in seen)
    if previous is not None and previous.expires_at is not None:
        expiry = max(expiry, as_utc(previous.expires_at))
    kind, _, value = target.partition(":")
    return BanListEntry(
        peer_id=value if kind == "peer" else None,
        cidr=value if kind == "cidr" else None,
        reason=f"auto: {', '.join(reasons)}"[:256] if reasons else "auto",
        expires_at=expiry,
        provenance=Provenance(
            nodes=sorted(nodes)[:_MAX_NODES],
            node_count=max(len(nodes), prov.node_count if prov else 0),
            first_seen=_first_seen(prov, seen),
            last_seen=latest,
            reasons=reasons[:_MAX_REASONS],
            offences=max(offences, prov.offences if prov else 0),
        ),
    )


def required_nodes(threshold: int, fleet_size: int) -> int:
    """k of n: `threshold` nodes, but never more than the fleet has (and at least one)."""
    return max(1, min(threshold, fleet_size))


def evict(entries: Iterable[BanListEntry], *, now: datetime, capacity: int) -> list[BanListEntry]:
    """Drop expired entries, then keep the `capacity` with the latest expiry; sorted by target."""
    live = [e for e in entries if e.expires_at is None or as_utc(e.expires_at) > now]
    far_future = now + timedelta(days=36_500)

    def lifetime(entry: BanListEntry) -> datetime:
        return far_future if entry.expires_at is None else as_utc(entry.expires_at)

    live.sort(key=lambda e: e.target)
    live.sort(key=lifetime, reverse=True)  # stable: ties keep target order
    return sorted(live[:capacity], key=lambda e: e.target)


def auto_entries(
    reports: Sequence[NodeReport],
    previous: Sequence[BanListEntry],
    *,
    now: datetime,
    fleet_size: int,
    threshold: int = 1,
    capacity: int = MAX_ENTRIES_PER_OBJECT,
    max_ttl: timedelta = DEFAULT_MAX_TTL,
) -> list[BanListEntry]:
    """The fleet's automatic ban entries after this round of local-ban reports."""
    now = as_utc(now)
    by_target = {e.target: e for e in previous}
    merged = dict(by_target)
    needed = required_nodes(threshold, fleet_size)
    for target, seen in _sightings(reports, now, max_ttl).items():
        known = by_target.get(target)
        if known is not None or len({s.node for s in seen}) >= needed:
            merged[target] = _merge(target, seen, known)
    return evict(merged.values(), now=now, capacity=capacity)


def bans_by_reason(entries: Iterable[BanListEntry]) -> dict[str, int]:
    """Count of automatic bans per reason given by nodes (for the metric)."""
    counts: dict[str, int] = {}
    for entry in entries:
        reasons = entry.provenance.reasons if entry.provenance else []
        for reason in reasons or ["unknown"]:
            counts[reason] = counts.get(reason, 0) + 1
    return counts
