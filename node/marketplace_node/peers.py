"""The bounded peer table (pure bookkeeping; the liveness loop lives in `service`).

Pinned peers (bootstrap peers and fleet members from the operator) are never
evicted for room. When the table is full, a new peer replaces the unpinned
entry seen least recently, and only if that entry is older than the newcomer's
sighting; if every entry is pinned the newcomer is refused. A peer whose
liveness checks fail `max_failures` times in a row and that has not been seen
for `stale_after` seconds is removed. A peer's `peer_leaving` removes it only if
it was announced after we met this incarnation of the peer (`left`): a node
reborn with an empty disk announces its leaving dated before its first hello,
so peers drop what they knew of its old copies without dropping the new node.

A `foreign` peer belongs to another fleet (admitted by the fleet's peering rule): it
shares catalogues and content, but the fleet never counts on it for copies (`alive`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from marketplace_protocol.clock import elapsed


@dataclass(slots=True)
class Peer:
    peer_id: str
    address: str
    last_seen: float  # monotonic
    pinned: bool = False
    failures: int = 0
    met_wall: float = 0.0  # wall clock when this entry was made (first sighting)
    foreign: bool = False  # of another fleet


@dataclass
class PeerTable:
    capacity: int
    max_failures: int = 3
    stale_after: float = 60.0
    _peers: dict[str, Peer] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers

    def get(self, peer_id: str) -> Peer | None:
        return self._peers.get(peer_id)

    def all(self) -> list[Peer]:
        return list(self._peers.values())

    def alive(self) -> set[str]:
        """Peers we count on: of our fleet, known, and not failing (fewer than
        `max_failures` in a row)."""
        return {
            p.peer_id
            for p in self._peers.values()
            if p.failures < self.max_failures and not p.foreign
        }

    def fleet_size(self) -> int:
        """Known peers of our own fleet."""
        return sum(not p.foreign for p in self._peers.values())

    def seen(
        self,
        peer_id: str,
        address: str,
        now: float,
        *,
        pinned: bool = False,
        wall: float = 0.0,
        foreign: bool = False,
    ) -> bool:
        """Record a sign of life (`now` monotonic, `wall` the wall clock); returns False if the
        table had no room for a new peer."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            peer.address, peer.last_seen, peer.failures = address, now, 0
            peer.pinned = peer.pinned or pinned
            peer.foreign = foreign
            return True
        if len(self._peers) >= self.capacity and not self._evict_one(pinned=pinned):
            return False
        self._peers[peer_id] = Peer(peer_id, address, now, pinned, met_wall=wall, foreign=foreign)
        return True

    def _evict_one(self, *, pinned: bool) -> bool:
        victims = [p for p in self._peers.values() if not p.pinned]
        if not victims:
            return False
        oldest = min(victims, key=lambda p: (p.last_seen, p.peer_id))
        del self._peers[oldest.peer_id]
        return True

    def touch(self, peer_id: str, now: float) -> None:
        """Any verified request from a known peer is a sign of life."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            peer.last_seen, peer.failures = now, 0

    def least_recently_seen(self, k: int, *, before: float) -> list[Peer]:
        """Up to `k` peers not seen since `before`, the longest silent first (liveness probes)."""
        quiet = [p for p in self._peers.values() if p.last_seen < before]
        return sorted(quiet, key=lambda p: (p.last_seen, p.peer_id))[:k]

    def failed(self, peer_id: str) -> None:
        peer = self._peers.get(peer_id)
        if peer is not None:
            peer.failures += 1

    def remove(self, peer_id: str) -> None:
        self._peers.pop(peer_id, None)

    def prune(self, keep: Callable[[Peer], bool]) -> list[str]:
        """Remove every peer `keep` refuses (banned, or no longer allowed); their ids."""
        gone = [p.peer_id for p in self._peers.values() if not keep(p)]
        for peer_id in gone:
            del self._peers[peer_id]
        return gone

    def left(self, peer_id: str, announced: int) -> bool:
        """The peer announced its leaving at `announced` (wall seconds): remove it unless we
        met it after that (a later incarnation). True if it was removed."""
        peer = self._peers.get(peer_id)
        if peer is None or announced < math.floor(peer.met_wall):
            return False
        del self._peers[peer_id]
        return True

    def repin(self, addresses: Iterable[str]) -> None:
        """Pin exactly the peers at `addresses` (the current bootstrap/member set)."""
        wanted = set(addresses)
        for peer in self._peers.values():
            peer.pinned = peer.address in wanted

    def stale(self, now: float) -> list[str]:
        return [
            p.peer_id
            for p in self._peers.values()
            if p.failures >= self.max_failures and elapsed(now, p.last_seen) > self.stale_after
        ]

    def sample(self, k: int, rng: random.Random, *, exclude: Iterable[str] = ()) -> list[Peer]:
        """Up to `k` distinct random peers, none of `exclude`; order is the gossip order."""
        excluded = set(exclude)
        pool = [p for p in self._peers.values() if p.peer_id not in excluded]  # insertion order
        return rng.sample(pool, min(k, len(pool)))
