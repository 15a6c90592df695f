"""Compact keys and a compact TTL set for the node's big per-peer and per-message tables.

The tables that any peer can fill (rate-limiter keys, offenders, the replay
and gossip seen-caches) hold up to hundreds of thousands of entries. Keeping
each entry's strings and tuples costs 300-600 bytes; what a table needs is
only to tell keys apart. `key` is the 64-bit hash Python computes for a dict
lookup anyway (SipHash-1-3 with the process's random key for strings), kept
as one small int (32 bytes) instead of the strings and tuple it summarises.
Two distinct keys collide with probability 2^-64 per pair; a peer cannot
aim a collision at another's entry without the process's hash key (and even
knowing it, a second preimage costs 2^64 hashes). A collision only merges
two entries' counters or makes a duplicate look seen, never admits a forgery
(signatures are checked on every message regardless).

`TtlSet` replaces cachetools' `TTLCache` where the value is only "present":
the TTL is one constant on a monotonic clock, so insertion order is expiry
order, and a ring of (key, deadline) in two typed arrays (16 bytes a slot)
plus a set of the live keys is all it takes (TTLCache keeps a linked node
object, a deadline float and two map entries per key: about 600 bytes).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Hashable


def key(value: Hashable) -> int:
    """A 64-bit stand-in for `value` (a str, or a tuple of them) in a bounded table."""
    return hash(value)


class TtlSet:
    """At most `maxsize` keys, each remembered for `ttl` seconds of `timer` after it was added.

    When full, the key added longest ago is forgotten first. Adding a key that is
    present changes nothing (its first deadline stands): the callers add only what
    they have just found absent. The ring is allocated whole (16 bytes a slot), so
    the table's memory is flat from the start.
    """

    __slots__ = ("_count", "_deadlines", "_head", "_keys", "_live", "maxsize", "timer", "ttl")

    def __init__(self, *, maxsize: int, ttl: float, timer: Callable[[], float]) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be positive")
        self.maxsize, self.ttl, self.timer = maxsize, ttl, timer
        self._keys = array("q", bytes(8 * maxsize))  # slots head .. head+count-1, oldest first
        self._deadlines = array("d", bytes(8 * maxsize))
        self._head = self._count = 0
        self._live: set[int] = set()

    def __len__(self) -> int:
        self._expire(self.timer())
        return len(self._live)

    def __contains__(self, value: Hashable) -> bool:
        self._expire(self.timer())
        return key(value) in self._live

    def add(self, value: Hashable) -> None:
        now = self.timer()
        self._expire(now)
        k = key(value)
        if k in self._live:
            return
        if self._count == self.maxsize:
            self._pop_oldest()
        slot = (self._head + self._count) % self.maxsize
        self._keys[slot], self._deadlines[slot] = k, now + self.ttl
        self._count += 1
        self._live.add(k)

    def discard(self, value: Hashable) -> None:
        """Forget `value` now (its slot is freed in turn; if it is added again meanwhile,
        that older slot forgets it early, which only lets a duplicate in once more)."""
        self._live.discard(key(value))

    def _pop_oldest(self) -> None:
        self._live.discard(self._keys[self._head])
        self._head = (self._head + 1) % self.maxsize
        self._count -= 1

    def _expire(self, now: float) -> None:
        while self._count and self._deadlines[self._head] <= now:
            self._pop_oldest()
