"""How far this node's wall clock is from its peers', read off their signed requests.

Every peer request carries its signer's `created` (`signing`); its distance from our own
wall clock is the peer's clock offset plus the request's transit. One peer that
disagrees may be the wrong one; when most peers heard from lately disagree with us by
more than `SKEW_SECONDS` in the same direction, our own clock is the suspect (etcd warns
of a member's clock difference from its peers the same way). The node then says so
(`NodeStatus.clockOffsetSeconds`, the `clock_offset_seconds` gauge) and answers a
freshness check it cannot judge with 503 `clock_skewed` rather than blaming the caller's
timestamp. Durations never use the wall clock (`marketplace_protocol.clock`), so a step
changes only what wall time is for: signed timestamps and expiry dates.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict

from marketplace_protocol.clock import Clock

SKEW_SECONDS = 30.0  # well above transit and the 1 s resolution of `created`
FRESH_SECONDS = 120.0  # a peer's reading counts this long (monotonic)
MIN_PEERS = 2  # with one peer, either clock may be the wrong one
MAX_PEERS = 64


class PeerClocks:
    """The latest offset (their `created` minus our wall clock) of each peer heard lately."""

    def __init__(self, clock: Clock, *, max_peers: int = MAX_PEERS) -> None:
        self._clock = clock
        self._max = max_peers
        self._seen: OrderedDict[str, tuple[float, float]] = OrderedDict()  # id -> (offset, at)

    def note(self, peer_id: str, created: int, *, now_wall: float) -> None:
        self._seen[peer_id] = (created - now_wall, self._clock.monotonic())
        self._seen.move_to_end(peer_id)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)

    def _fresh(self) -> list[float]:
        now = self._clock.monotonic()
        return [off for off, at in self._seen.values() if now - at <= FRESH_SECONDS]

    def offset(self) -> float:
        """Our clock minus our peers' as most of them see it, in seconds; 0.0 unless most
        peers heard lately (at least `MIN_PEERS`) place us more than `SKEW_SECONDS` off
        in the same direction."""
        offsets = self._fresh()
        if len(offsets) < MIN_PEERS:
            return 0.0
        for side in (1, -1):
            off = [o for o in offsets if o * side > SKEW_SECONDS]
            if 2 * len(off) > len(offsets):
                return -statistics.median(off)
        return 0.0

    def skewed(self) -> bool:
        return self.offset() != 0.0
