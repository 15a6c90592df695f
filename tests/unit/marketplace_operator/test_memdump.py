"""The SIGUSR2 memory dump names what holds the memory (issue 15's diagnosis)."""

from __future__ import annotations

import tracemalloc

from marketplace_operator import memdump


class Hoard:
    """A type of our own, so its count is ours to check."""


def test_the_dump_counts_live_objects_by_type_and_says_when_sites_are_not_traced() -> None:
    kept = [Hoard() for _ in range(50_000)]
    lines = memdump.report()
    assert "Hoard 50000," in lines[0]
    assert lines[-1].startswith("allocation sites: not traced")
    del kept


def test_under_tracemalloc_the_dump_names_the_biggest_allocation_site() -> None:
    tracemalloc.start()
    try:
        kept = [bytearray(1024) for _ in range(4_000)]  # about 4 MiB on this line
        lines = memdump.report(top=3)
    finally:
        tracemalloc.stop()
    by_line = [line for line in lines if line.startswith("by lineno")]
    assert __file__ in by_line[0]
    assert float(by_line[0].split()[2]) >= 3.9
    assert any(line.startswith("by filename") and __file__ in line for line in lines)
    del kept
