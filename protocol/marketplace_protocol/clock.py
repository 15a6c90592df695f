"""Time, injected: a monotonic clock for durations and expiry, a wall clock for timestamps.

Durations and expiries never use the wall clock, so an NTP step or a clock set
before the epoch cannot produce a negative duration or a crash (review
CRITICAL-2). Decision logic takes a `Clock` so tests use `FakeClock`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch; may jump either way, never used for durations."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class FakeClock:
    """A clock tests move by hand; the wall clock can be set to jump either way."""

    def __init__(self, *, monotonic: float = 1_000.0, wall: float = 1_700_000_000.0) -> None:
        self._monotonic = monotonic
        self._wall = wall

    def monotonic(self) -> float:
        return self._monotonic

    def wall(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        self._monotonic += seconds
        self._wall += seconds

    def set_wall(self, wall: float) -> None:
        self._wall = wall


def elapsed(later: float, earlier: float) -> float:
    """`later - earlier`, never negative (a clock that stepped back reads as no time)."""
    return max(0.0, later - earlier)


def to_datetime(wall: float) -> datetime:
    """A wall-clock reading as an aware UTC datetime; clamps readings before the epoch."""
    return datetime.fromtimestamp(max(0.0, wall), tz=UTC)
