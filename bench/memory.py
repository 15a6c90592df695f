"""Resident memory of a process, for the benchmarks that report it. Not a benchmark."""

from __future__ import annotations

import resource


def rss_mib(pid: int | None = None) -> float:
    """Resident set size now of `pid` (default: this process) from Linux `/proc`; for this
    process without `/proc`, the peak from getrusage."""
    try:
        with open(f"/proc/{pid or 'self'}/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        if pid is not None:
            return float("nan")
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
