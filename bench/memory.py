"""Resident memory of a process, for the benchmarks that report it. Not a benchmark."""

from __future__ import annotations

import gc
import resource
import sys
import types


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
