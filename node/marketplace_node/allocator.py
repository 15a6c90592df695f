"""Keep the node's big tables' memory returnable to the system (glibc's malloc).

The tables any peer can fill (rate-limiter keys, offenders, the replay and
gossip seen-caches, provider records) are capped, but they churn: entries
leave and others arrive all the time, and CPython rebuilds a dict's or a
set's hash table (several MiB at these sizes) every so often. glibc serves
an allocation that large with its own `mmap`, returned to the system when
freed, only while it is above `M_MMAP_THRESHOLD`; and each time such a
block is freed glibc raises that threshold (up to 32 MiB), so the next
rebuilds come from the heap, where the holes they leave keep the resident
set high. Measured with `bench node_memory` fed 2.5 million identities:
resident memory swung between 236 and 273 MiB with the threshold free to
move, and stayed between 227 and 239 MiB with it pinned at 128 KiB (the
number of live allocations was the same in both runs).

Pinning the threshold is what `MALLOC_MMAP_THRESHOLD_=131072` in the
environment does; doing it at start means every way of launching the node
(the image, a process pod, `marketplace-node run` by hand) gets it. There is
no library for one `mallopt` call. On a libc without `mallopt` (musl,
macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
from typing import Final

from marketplace_protocol import libc

M_MMAP_THRESHOLD: Final = -3  # <malloc.h>
MMAP_THRESHOLD_BYTES: Final = 128 * 1024  # glibc's initial value, no longer raised


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes; False where there is no `mallopt`."""
    mallopt = libc.function("mallopt", (ctypes.c_int, ctypes.c_int), ctypes.c_int)
    return mallopt is not None and bool(mallopt(M_MMAP_THRESHOLD, threshold))
