"""Per-peer circuit breakers: stop calling a peer that keeps failing, probe it now and then.

A breaker is closed (calls go through) until `failures_to_open` calls in a
row fail; then it opens for `open_seconds` (refusing at once, without a
socket or a timeout spent), doubling on each re-open up to
`max_open_seconds`. After that one call is let through as a probe
(half-open): success closes the breaker, failure opens it again. A probe
whose caller never reports (cancelled) expires after `open_seconds`, so a
breaker cannot stick half-open. Review SUGGESTION-2 and MAJOR-10.

`transition()` is the pure rule; `Breakers` keeps one state per peer in a
bounded LRU (forgetting a peer only forgets its failures).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Final

from marketplace_protocol import errors
from marketplace_protocol.clock import Clock

DEFAULT_CAPACITY: Final = 10_000


class Phase(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Event(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failures_to_open: int = 5
    open_seconds: float = 2.0
    max_open_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class Breaker:
    phase: Phase = Phase.CLOSED
    failures: int = 0  # consecutive failures while closed
    opens: int = 0  # consecutive openings without a success: the back-off exponent
    until: float = 0.0  # open: when a probe may go; half-open: when the probe lease ends


def open_for(config: BreakerConfig, opens: int) -> float:
    return min(config.max_open_seconds, config.open_seconds * 2.0 ** min(opens, 32))


def admit(breaker: Breaker, now: float, config: BreakerConfig) -> tuple[bool, Breaker]:
    """Pure: may a call go now, and the breaker after deciding (a probe takes the lease)."""
    if breaker.phase is Phase.CLOSED:
        return True, breaker
    if now < breaker.until:
        return False, breaker
    return True, replace(breaker, phase=Phase.HALF_OPEN, until=now + config.open_seconds)


def transition(breaker: Breaker, event: Event, now: float, config: BreakerConfig) -> Breaker:
    """Pure: the breaker after a call's outcome."""
    if event is Event.SUCCESS:
        return Breaker()
    if breaker.phase is Phase.CLOSED and breaker.failures + 1 < config.failures_to_open:
        return replace(breaker, failures=breaker.failures + 1)
    return Breaker(Phase.OPEN, 0, breaker.opens + 1, now + open_for(config, breaker.opens))


class Breakers:
    """One breaker per peer (by base URL or peer id), bounded."""

    def __init__(
        self,
        clock: Clock,
        config: BreakerConfig | None = None,
        *,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        self._clock = clock
        self._config = config or BreakerConfig()
        self._capacity = capacity
        self._states: OrderedDict[str, Breaker] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def state(self, peer: str) -> Breaker:
        return self._states.get(peer, Breaker())

    def _put(self, peer: str, breaker: Breaker) -> None:
        states = self._states
        if breaker == Breaker():
            states.pop(peer, None)  # a healthy peer costs no memory
            return
        states[peer] = breaker
        states.move_to_end(peer)
        if len(states) > self._capacity:
            states.popitem(last=False)

    def check(self, peer: str) -> None:
        """Before a call: raises `UpstreamFailed` (retryable) while the peer's circuit is open."""
        allowed, breaker = admit(self.state(peer), self._clock.monotonic(), self._config)
        if not allowed:
            raise errors.UpstreamFailed(
                "peer circuit open after repeated failures", details={"circuit": "open"}
            )
        if breaker is not self.state(peer):
            self._put(peer, breaker)

    def success(self, peer: str) -> None:
        self._put(peer, transition(self.state(peer), Event.SUCCESS, 0.0, self._config))

    def failure(self, peer: str) -> None:
        now = self._clock.monotonic()
        self._put(peer, transition(self.state(peer), Event.FAILURE, now, self._config))
