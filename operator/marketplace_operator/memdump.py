"""On SIGUSR2, log where the operator's memory is (a diagnosis of fleet-scale RSS).

Two views, both without stopping the operator: the live container objects by type
(`gc`, always), and, when the operator runs under `PYTHONTRACEMALLOC=N`, the biggest
allocation sites by file and by line (`tracemalloc`, at N frames a site). `kill -USR2
<pid>` during a scale run says which of kopf's, aiohttp's or our own structures grew
(docs/operator.md, "At fleet scale").
"""

from __future__ import annotations

import gc
import logging
import signal
import tracemalloc
from collections import Counter
from types import FrameType

log = logging.getLogger(__name__)
TOP = 30


def install() -> None:
    """Dump on SIGUSR2 (whose default would end the process)."""
    signal.signal(signal.SIGUSR2, _on_signal)


def _on_signal(_signum: int, _frame: FrameType | None) -> None:
    for line in report():
        log.warning("memdump: %s", line)


def report(top: int = TOP) -> list[str]:
    """The dump's lines: object counts by type, then (when tracing) the allocation sites."""
    counts = Counter(type(o).__qualname__ for o in gc.get_objects())
    lines = [f"objects by type: {', '.join(f'{t} {n}' for t, n in counts.most_common(top))}"]
    if not tracemalloc.is_tracing():
        return [*lines, "allocation sites: not traced (run with PYTHONTRACEMALLOC=1)"]
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__),)
    )
    total = sum(s.size for s in snapshot.statistics("filename"))
    lines.append(f"traced: {total / 2**20:.1f} MiB")
    for kind in ("filename", "lineno"):
        for stat in snapshot.statistics(kind)[:top]:
            frame = stat.traceback[0]
            where = frame.filename if kind == "filename" else f"{frame.filename}:{frame.lineno}"
            lines.append(f"by {kind}: {stat.size / 2**20:7.2f} MiB {stat.count:8d} {where}")
    return lines
