"""Ban tables: bans by exact peer id and by CIDR, each expiring on the monotonic clock.

A lookup costs one dict probe for the peer id plus one per distinct prefix
length in use (at most 33 for IPv4, 129 for IPv6), never one per ban: CIDR
bans are grouped by prefix length into dicts keyed by the network number.

Expiry is a monotonic deadline. Absolute `expiresAt` wall times (from a
policy document or a persisted record) are converted once, when loaded, to
`now_monotonic + (expiresAt - now_wall)` clamped to `[0, MAX_BAN_SECONDS]`,
so a wall clock that jumps by hours afterwards neither lifts nor extends a
ban (review CRITICAL-2, MAJOR-4).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

import pydantic
from marketplace_protocol.admin import BanEntry, LocalBan
from marketplace_protocol.clock import to_datetime

MAX_BAN_SECONDS: Final = 10 * 365 * 86_400.0
"""Longest ban a deadline can express: bans "until lifted" use `deadline=None` instead."""

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Ban:
    """One ban on a peer id or a network, with its monotonic deadline (None = until lifted)."""

    peer_id: str | None
    network: IpNetwork | None
    reason: str
    source: str
    deadline: float | None
    offences: int = 1
    banned_at: float = 0.0  # wall seconds, for provenance only

    @property
    def target(self) -> str:
        return self.peer_id if self.peer_id is not None else str(self.network)

    def active(self, now: float) -> bool:
        """A ban is in force strictly before its deadline and lifted exactly at it."""
        return self.deadline is None or now < self.deadline


def deadline_from_wall(
    expires_at: datetime | None, *, now_monotonic: float, now_wall: float
) -> float | None:
    """An absolute wall expiry as a monotonic deadline, clamped to `[now, now + MAX]`."""
    if expires_at is None:
        return None
    remaining = expires_at.timestamp() - now_wall
    return now_monotonic + min(max(0.0, remaining), MAX_BAN_SECONDS)


def wall_from_deadline(
    deadline: float | None, *, now_monotonic: float, now_wall: float
) -> datetime | None:
    """The inverse, for reporting and persistence: a deadline as an absolute UTC time."""
    if deadline is None:
        return None
    return to_datetime(now_wall + max(0.0, deadline - now_monotonic))


def parse_ip(ip: str) -> IpAddress | None:
    """The address a request came from, or None when it is not an IP (e.g. a unix socket)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1 for ban purposes
    return address


class BanTable:
    """Bans by peer id and by network; expired bans read as absent and are pruned lazily."""

    __slots__ = ("_by_peer", "_nets4", "_nets6")

    def __init__(self, bans: Iterable[Ban] = ()) -> None:
        self._by_peer: dict[str, Ban] = {}
        # prefix length -> {network number >> host bits: ban}, per IP version
        self._nets4: dict[int, dict[int, Ban]] = {}
        self._nets6: dict[int, dict[int, Ban]] = {}
        for ban in bans:
            self.add(ban)

    def __len__(self) -> int:
        nets = sum(len(d) for d in self._nets4.values()) + sum(len(d) for d in self._nets6.values())
        return len(self._by_peer) + nets

    def __iter__(self) -> Iterator[Ban]:
        yield from self._by_peer.values()
        for table in (self._nets4, self._nets6):
            for group in table.values():
                yield from group.values()

    def add(self, ban: Ban) -> None:
        """Add or replace the ban on the same target; a longer ban wins over a shorter one."""
        if ban.peer_id is not None:
            self._by_peer[ban.peer_id] = _longer(self._by_peer.get(ban.peer_id), ban)
            return
        if ban.network is None:
            raise ValueError("a ban needs a peer id or a network")
        net = ban.network
        table = self._nets4 if net.version == 4 else self._nets6
        group = table.setdefault(net.prefixlen, {})
        key = int(net.network_address) >> (net.max_prefixlen - net.prefixlen)
        group[key] = _longer(group.get(key), ban)

    def remove(self, ban: Ban) -> None:
        if ban.peer_id is not None:
            self._by_peer.pop(ban.peer_id, None)
            return
        if ban.network is None:
            return
        net = ban.network
        table = self._nets4 if net.version == 4 else self._nets6
        group = table.get(net.prefixlen)
        if group is not None:
            group.pop(int(net.network_address) >> (net.max_prefixlen - net.prefixlen), None)
            if not group:
                del table[net.prefixlen]

    def peer(self, peer_id: str, now: float) -> Ban | None:
        ban = self._by_peer.get(peer_id)
        if ban is None:
            return None
        if ban.active(now):
            return ban
        del self._by_peer[peer_id]
        return None

    def address(self, ip: IpAddress, now: float) -> Ban | None:
        """An active ban of a network containing `ip`; expired ones wait for `prune()`."""
        table = self._nets4 if ip.version == 4 else self._nets6
        bits = ip.max_prefixlen
        number = int(ip)
        for prefixlen, group in table.items():
            ban = group.get(number >> (bits - prefixlen))
            if ban is not None and ban.active(now):
                return ban
        return None

    def prune(self, now: float) -> int:
        """Drop expired bans; returns how many. Lookups prune lazily, this bounds idle memory."""
        expired = [ban for ban in self if not ban.active(now)]
        for ban in expired:
            self.remove(ban)
        return len(expired)


def _longer(old: Ban | None, new: Ban) -> Ban:
    if old is None:
        return new
    if old.deadline is None or (new.deadline is not None and old.deadline >= new.deadline):
        return replace(old, offences=max(old.offences, new.offences))
    return new


def fleet_bans(entries: Iterable[BanEntry], *, now_monotonic: float, now_wall: float) -> BanTable:
    """Compile a policy document's bans; entries already expired are left out."""
    table = BanTable()
    for entry in entries:
        deadline = deadline_from_wall(
            entry.expires_at, now_monotonic=now_monotonic, now_wall=now_wall
        )
        if deadline is not None and deadline <= now_monotonic:
            continue
        network = None if entry.cidr is None else ipaddress.ip_network(entry.cidr, strict=False)
        table.add(
            Ban(
                peer_id=entry.peer_id,
                network=network,
                reason=entry.reason,
                source=entry.source or "policy",
                deadline=deadline,
            )
        )
    return table


def to_records(bans: Iterable[Ban], *, now_monotonic: float, now_wall: float) -> list[LocalBan]:
    """Active bans as records with an absolute expiry: monotonic time dies with the process.

    A ban whose target does not fit the wire model (a peer id of another
    form) stays enforced here but is left out of the records.
    """
    records = []
    for ban in bans:
        if not ban.active(now_monotonic):
            continue
        try:
            records.append(
                LocalBan(
                    peer_id=ban.peer_id,
                    cidr=None if ban.network is None else str(ban.network),
                    reason=ban.reason,
                    offences=max(1, ban.offences),
                    banned_at=to_datetime(ban.banned_at),
                    expires_at=wall_from_deadline(
                        ban.deadline, now_monotonic=now_monotonic, now_wall=now_wall
                    ),
                )
            )
        except pydantic.ValidationError:
            continue
    return records


def from_records(
    records: Iterable[LocalBan], *, source: str, now_monotonic: float, now_wall: float
) -> list[Ban]:
    """Persisted records back as bans (after a restart); expired ones are dropped."""
    bans = []
    for record in records:
        deadline = deadline_from_wall(
            record.expires_at, now_monotonic=now_monotonic, now_wall=now_wall
        )
        if deadline is not None and deadline <= now_monotonic:
            continue
        try:
            network = None if record.cidr is None else ipaddress.ip_network(record.cidr, False)
        except ValueError:
            continue  # a corrupt record must not stop the node from starting
        if network is None and record.peer_id is None:
            continue
        bans.append(
            Ban(
                peer_id=record.peer_id,
                network=network,
                reason=record.reason,
                source=source,
                deadline=deadline,
                offences=record.offences,
                banned_at=record.banned_at.timestamp(),
            )
        )
    return bans
