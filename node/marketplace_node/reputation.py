"""Provider reputation (pure): success rate and latency as exponentially weighted averages.

    reputation = success_ewma * 1 / (1 + latency_ewma / LATENCY_SCALE)

in [0, 1]; a peer never tried starts at the neutral prior (success 0.5, no
latency penalty). Any non-finite input is ignored (a NaN latency is recorded
as a failure's worth of nothing), so reputation is always a finite number.
Providers are chosen best first; ties are broken by peer id so the choice is
deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from cachetools import LRUCache

ALPHA = 0.3  # weight of the newest observation
PRIOR_SUCCESS = 0.5
LATENCY_SCALE = 0.5  # seconds at which latency halves reputation


@dataclass(frozen=True, slots=True)
class Reputation:
    success: float = PRIOR_SUCCESS
    latency: float = 0.0
    successes: int = 0
    failures: int = 0

    @property
    def score(self) -> float:
        value = self.success / (1.0 + self.latency / LATENCY_SCALE)
        return value if math.isfinite(value) else 0.0


def record_success(rep: Reputation, latency: float) -> Reputation:
    latency = latency if math.isfinite(latency) and latency >= 0 else rep.latency
    return Reputation(
        success=(1 - ALPHA) * rep.success + ALPHA,
        latency=latency if rep.successes == 0 else (1 - ALPHA) * rep.latency + ALPHA * latency,
        successes=rep.successes + 1,
        failures=rep.failures,
    )


def record_failure(rep: Reputation) -> Reputation:
    return Reputation(
        success=(1 - ALPHA) * rep.success,
        latency=rep.latency,
        successes=rep.successes,
        failures=rep.failures + 1,
    )


def fallback_order(candidates: Iterable[tuple[str, float]]) -> list[str]:
    """Peer ids best first: reputation descending (non-finite as lowest), then peer id."""

    def key(pair: tuple[str, float]) -> tuple[float, str]:
        peer_id, score = pair
        return (-(score if math.isfinite(score) else -math.inf), peer_id)

    return [peer_id for peer_id, _ in sorted(candidates, key=key)]


class ReputationBook:
    """Reputation per peer id, bounded: the least recently used entry is forgotten first."""

    def __init__(self, *, maxsize: int = 10_000) -> None:
        self._book: LRUCache[str, Reputation] = LRUCache(maxsize=maxsize)

    def get(self, peer_id: str) -> Reputation:
        return self._book.get(peer_id, Reputation())

    def score(self, peer_id: str) -> float:
        rep = self._book.get(peer_id)
        return rep.score if rep is not None else Reputation().score

    def success(self, peer_id: str, latency: float) -> None:
        self._book[peer_id] = record_success(self.get(peer_id), latency)

    def failure(self, peer_id: str) -> None:
        self._book[peer_id] = record_failure(self.get(peer_id))

    def forget(self, peer_id: str) -> None:
        self._book.pop(peer_id, None)
