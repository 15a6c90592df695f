"""The node pins glibc's mmap threshold where there is a `mallopt`, and starts anyway where not."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import subprocess
import sys

import pytest
from marketplace_node import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_pinned_threshold() -> None:
    assert allocator.pin_mmap_threshold() is True


_REMAPPED = """
import ctypes, ctypes.util, sys
from marketplace_node import allocator
class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd".split()]
    _fields_ += [(n, ctypes.c_size_t) for n in "usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = Mallinfo2
if sys.argv[1] == "pinned":
    assert allocator.pin_mmap_threshold()
first = bytearray(4 << 20)
del first
before = libc.mallinfo2().hblks
second = bytearray(4 << 20)
print(libc.mallinfo2().hblks - before)
"""


def _mapped_again(mode: str) -> int:
    """Blocks glibc mapped for a 4 MiB allocation made after a freed one, in a fresh
    interpreter (no other thread there allocates meanwhile)."""
    run = subprocess.run(
        [sys.executable, "-c", _REMAPPED, mode], capture_output=True, text=True, check=True
    )
    return int(run.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_a_large_table_freed_and_rebuilt_is_mapped_again() -> None:
    """What the pin is for: glibc raises its threshold past a freed 4 MiB block and serves
    the next one (a hash table rebuilt) from the heap, where its hole stays resident."""
    assert _mapped_again("free") == 0
    assert _mapped_again("pinned") == 1


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
