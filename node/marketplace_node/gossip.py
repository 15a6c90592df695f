"""Push-gossip decisions (pure): what to accept, and whom to forward to.

An announcement is accepted once (bounded TTL seen-cache keyed by its id, a
hash of its signed body, held as a compact 64-bit key: `compact`), after its
signatures verified — so a forgery never enters the cache and cannot shadow
the genuine announcement. It is forwarded
to `fanout` random peers other than the sender, the origin and those the
sender says it reached (`reached_hint`) while its hop count stays under the
hop limit. Lost pushes are repaired by anti-entropy
(`sync`), so gossip only has to be fast, not perfect.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable

from marketplace_protocol import identity
from marketplace_protocol.clock import Clock

from marketplace_node import limits
from marketplace_node.compact import TtlSet
from marketplace_node.model import Announcement
from marketplace_node.peers import Peer, PeerTable


class SeenCache:
    def __init__(
        self,
        clock: Clock,
        *,
        maxsize: int = limits.SEEN_CACHE_MAX,
        ttl: float = limits.SEEN_CACHE_TTL_SECONDS,
    ) -> None:
        self._seen = TtlSet(maxsize=maxsize, ttl=ttl, timer=clock.monotonic)

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, announcement_id: object) -> bool:
        return isinstance(announcement_id, str) and announcement_id in self._seen

    def add(self, announcement_id: str) -> None:
        self._seen.add(announcement_id)

    def discard(self, announcement_id: str) -> None:
        """Forget an id (its storing failed), so a later copy is accepted again."""
        self._seen.discard(announcement_id)


def fanout_for(ann: Announcement, self_id: str, *, origin_fanout: int, relay_fanout: int) -> int:
    """How many peers to push `ann` to: `origin_fanout` for our own fresh announcement (one
    wide first step), `relay_fanout` when relaying (each relay adds few copies)."""
    return origin_fanout if ann.origin == self_id and ann.hops == 0 else relay_fanout


def forward_targets(
    ann: Announcement,
    table: PeerTable,
    rng: random.Random,
    *,
    fanout: int,
    hop_limit: int,
    sender: str | None,
    self_id: str,
    reached: Collection[str] = (),
) -> list[Peer]:
    """Peers to push `ann` to next (empty once the hop limit is reached), none of those the
    sender says it reached already (`reached`, the `Gossip-Reached` hint: in a fleet no
    larger than the origin's fan-out the origin reached every member, and a relay that
    pushed to them all again would send three quarters of the fleet's pushes for nothing)."""
    if ann.hops >= hop_limit:
        return []
    exclude = {ann.origin, self_id, *reached} | ({sender} if sender else set())
    return table.sample(fanout, rng, exclude=exclude)


def reached_hint(targets: Iterable[Peer], reached: Iterable[str]) -> tuple[str, ...]:
    """Whom the next hop can skip: the peers we push to, then those we were told had it,
    at most `limits.GOSSIP_REACHED_MAX` (a hint; a peer it leaves out only gets a duplicate)."""
    ids = dict.fromkeys([*(p.peer_id for p in targets), *reached])
    return tuple(ids)[: limits.GOSSIP_REACHED_MAX]


def parse_reached(header: str) -> frozenset[str]:
    """The `Gossip-Reached` hint as sent (unverified, bounded): peer ids, comma-separated."""
    ids = header.split(",", limits.GOSSIP_REACHED_MAX)[: limits.GOSSIP_REACHED_MAX]
    return frozenset(i for i in ids if identity.is_peer_id(i))
