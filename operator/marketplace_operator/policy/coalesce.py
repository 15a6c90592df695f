"""Coalescing of policy changes: a "latest wins" mailbox per fleet. Pure (time is a parameter).

Every BanList or RateLimitPolicy event marks its fleets dirty; the worker
recomputes and pushes the whole effective policy, never a delta, so any
number of marks collapse into one push. A marked fleet is due `quiet`
seconds after its first unhandled mark (to gather, say, a `kubectl apply`
of a directory), but never sooner than `min_interval` after its previous
push started; a fleet being pushed is not due until that push ends, and marks
arriving meanwhile wait for the next round. So a burst of changes over `L`
seconds costs at most `L / min_interval + 2` pushes per fleet (and never more
than one per change), instead of one per change and node, while a lone
change waits only `quiet`.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass
class Mailbox(Generic[K]):
    """Dirty marks per key, with a gathering delay and a minimum interval between rounds."""

    quiet: float = 0.005
    min_interval: float = 0.1
    _first_mark: dict[K, float] = field(default_factory=dict)
    _last_start: dict[K, float] = field(default_factory=dict)
    _busy: set[K] = field(default_factory=set)

    def mark(self, key: K, now: float) -> None:
        """Something about `key` changed at `now`."""
        self._first_mark.setdefault(key, now)

    def _due_at(self, key: K) -> float:
        due = self._first_mark[key] + self.quiet
        last = self._last_start.get(key)
        return due if last is None else max(due, last + self.min_interval)

    def take_due(self, now: float) -> list[K]:
        """Keys to handle now, marked busy; their marks are consumed."""
        due = [k for k in self._first_mark if k not in self._busy and self._due_at(k) <= now]
        for key in due:
            del self._first_mark[key]
            self._busy.add(key)
            self._last_start[key] = now
        return due

    def done(self, key: K) -> None:
        """The handling of `key` ended; marks that arrived meanwhile become due on their time."""
        self._busy.discard(key)

    def next_due(self) -> float | None:
        """When the next idle marked key becomes due (None: nothing is waiting)."""
        times = [self._due_at(k) for k in self._first_mark if k not in self._busy]
        return min(times) if times else None

    def pending(self) -> set[K]:
        return set(self._first_mark)

    def forget(self, key: K) -> None:
        """Drop every trace of `key` (its fleet is gone)."""
        self._first_mark.pop(key, None)
        self._last_start.pop(key, None)
        self._busy.discard(key)
