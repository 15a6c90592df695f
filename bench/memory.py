"""Memory and CPU time of a process, for the benchmarks that report them. Not a benchmark."""

from __future__ import annotations

import gc
import os
import resource
import sys
import types
from pathlib import Path


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


_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def deep_mib(*roots: object) -> float:
    """Bytes (MiB) of everything reachable from `roots` (each object once; classes, modules
    and functions excluded): what a table costs, its keys and values included."""
    seen: set[int] = set()
    stack = list(roots)
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _OPAQUE):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total / 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
