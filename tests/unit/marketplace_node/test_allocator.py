"""The node pins glibc's mmap threshold where there is a `mallopt`, and starts anyway where not."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

import pytest
from marketplace_node import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_pinned_threshold() -> None:
    assert allocator.pin_mmap_threshold() is True


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _mmapped_blocks() -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = _Mallinfo2
    return int(libc.mallinfo2().hblks)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_a_large_table_freed_and_rebuilt_is_mapped_again() -> None:
    """What the pin is for: glibc would raise its threshold past a freed 4 MiB block and
    serve the next one (a hash table rebuilt) from the heap, where its hole stays resident."""
    assert allocator.pin_mmap_threshold()
    first = bytearray(4 << 20)
    del first
    before = _mmapped_blocks()
    second = bytearray(4 << 20)
    assert _mmapped_blocks() == before + 1
    del second


def test_without_a_c_library_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert allocator.pin_mmap_threshold() is False


def test_a_c_library_without_mallopt_is_tolerated(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoMallopt:
        def __init__(self, name: str) -> None:
            pass

        def __getattr__(self, name: str) -> object:
            raise AttributeError(name)

    monkeypatch.setattr(ctypes, "CDLL", NoMallopt)
    assert allocator.pin_mmap_threshold() is False
