"""One C library function by name, for the memory tuning both processes do on glibc.

The node pins glibc's mmap threshold (`marketplace_node.allocator`), the operator trims
its heap (`marketplace_operator.memtrim`); both must start anyway on a C library
without the function (musl, macOS), so the lookup answers None there instead of failing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any


def function(name: str, argtypes: tuple[Any, ...], restype: Any) -> Any | None:
    """The C library's `name`, typed with `argtypes` and `restype`, or None without one."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        found = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    found.argtypes, found.restype = argtypes, restype
    return found
