"""GCRA rate limiting on the monotonic clock, for one key or many (bounded).

GCRA (the generic cell rate algorithm) is a token bucket stored as a single
number per key, the theoretical arrival time (TAT): a request at `now` is
admitted when `TAT - burst * interval <= now - interval`, i.e. when the
bucket has room, and then pushes TAT one emission interval further. It never
admits more than `burst + rate * t` requests in any window of length `t`.

Time is always a `Clock.monotonic()` reading, so an NTP step of the wall clock
neither opens the gates nor locks a peer out (review CRITICAL-2, CRITICAL-4).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final

from marketplace_protocol.admin import Limit

from marketplace_node import compact

EPSILON: Final = 1e-9
"""Slack for float rounding of accumulated intervals: a nanosecond never admits a request early
in any way a client could notice, and without it `n` requests at exactly `n / rate` can fail."""

DEFAULT_KEY_CAPACITY: Final = 100_000
"""Keys tracked per keyed limiter: about 150 bytes each (a compact key, its TAT, the LRU
links; bench_node_memory), so ~15 MB at the cap."""


@dataclass(frozen=True, slots=True)
class Rate:
    """A `Limit` compiled for the hot path: emission interval and burst tolerance in seconds."""

    interval: float  # seconds per request at the sustained rate
    tolerance: float  # how far TAT may run ahead of now: (burst - 1) * interval

    @classmethod
    def of(cls, limit: Limit) -> Rate:
        interval = 1.0 / limit.rate
        return cls(interval=interval, tolerance=(limit.burst - 1) * interval)


def gcra(tat: float, now: float, rate: Rate) -> tuple[float, float]:
    """One GCRA step: `(new_tat, retry_after)`; the request is admitted iff retry_after == 0.

    A refused request leaves the TAT unchanged (pass it back as is), so
    hammering a closed gate does not push the opening further away.
    """
    start = tat if tat > now else now
    earliest = start - rate.tolerance
    if earliest > now + EPSILON:
        return tat, earliest - now
    return start + rate.interval, 0.0


class Gcra:
    """A single GCRA bucket (e.g. the node's global limit)."""

    __slots__ = ("_tat", "rate")

    def __init__(self, limit: Limit | Rate) -> None:
        self.rate = limit if isinstance(limit, Rate) else Rate.of(limit)
        self._tat = float("-inf")

    def check(self, now: float) -> tuple[bool, float]:
        """Admit or refuse one request at monotonic time `now`: `(allowed, retry_after)`."""
        self._tat, retry_after = gcra(self._tat, now, self.rate)
        return retry_after == 0.0, retry_after


class KeyedLimiter:
    """GCRA state per key (peer id, IP) in an LRU of at most `capacity` keys (compact keys:
    the table keeps a 64-bit hash of each, not its strings; `compact`).

    Eviction trade-off: the state of a key is only its TAT. Once the TAT lies
    in the past, a key is indistinguishable from a fresh one, so evicting an
    idle key loses nothing. Only a key whose TAT is still in the future (a
    peer inside its burst debt) regains a full burst when evicted, which needs
    `capacity` other keys to be touched more recently than it: an attacker
    rotating that many identities is held by the global limit instead, and the
    cap bounds memory whatever it does (review MAJOR-3).
    """

    __slots__ = ("_capacity", "_tats")

    def __init__(self, capacity: int = DEFAULT_KEY_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._tats: OrderedDict[int, float] = OrderedDict()  # compact key -> TAT

    def __len__(self) -> int:
        return len(self._tats)

    @property
    def capacity(self) -> int:
        return self._capacity

    def check(self, key: Hashable, now: float, rate: Rate) -> tuple[bool, float]:
        """Admit or refuse one request of `key` at `now`: `(allowed, retry_after)`."""
        tats, k = self._tats, compact.key(key)
        tat = tats.get(k)
        if tat is None:
            if len(tats) >= self._capacity:
                tats.popitem(last=False)
            tat = float("-inf")
        else:
            tats.move_to_end(k)
        new_tat, retry_after = gcra(tat, now, rate)
        tats[k] = new_tat
        return retry_after == 0.0, retry_after

    def forget(self, key: Hashable) -> None:
        self._tats.pop(compact.key(key), None)
