"""CPython's cyclic garbage collector, paced for a process that holds a fleet in memory.

The collector runs a young collection every 700 new container objects, and a full one
(every tracked object) every hundred of those once the survivors since the last grew by
a quarter. The operator allocates tens of thousands of short-lived objects a second while
a fleet rolls (parsed watch events, status answers), and holds its fleet's state (kopf's
indexes and bodies, the node loops): a full collection walks all of it. Measured in the
scale benchmark (gc.callbacks): 10 % of the operator's CPU at 100 nodes, 22 % at 1,000,
where each full collection took 0.31 s instead of 0.09 s: the one part of its work that
grew with the fleet twice over, with the heap and with the events (issue 15).

So the objects of the start (modules, classes, schemas) are frozen out of collections,
and the young generation is collected after `YOUNG_THRESHOLD` allocations: the operator's
garbage is nearly all acyclic (freed by reference counting as it goes), so few objects
wait longer for it, and far fewer live ones are examined and promoted. The time spent is
counted (`marketplace_operator_gc_seconds_total{generation}`).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

YOUNG_THRESHOLD = 50_000
OLDER_THRESHOLDS = (10, 10)  # CPython's: gen1 every 10 young runs, gen2 every 10 of those


def pace() -> None:
    """Freeze what exists now and pace the young generation (call once, after start-up)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)


class Timer:
    """Tells `record(generation, seconds)` of every collection's CPU time."""

    def __init__(
        self,
        record: Callable[[int, float], None],
        clock: Callable[[], float] = time.process_time,
    ) -> None:
        self._record, self._clock = record, clock
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
        else:
            self._record(int(info["generation"]), self._clock() - self._started)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def uninstall(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
