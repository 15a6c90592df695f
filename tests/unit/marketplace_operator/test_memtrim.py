"""The heap is trimmed now and then (issue 15: 89 of 210 MiB of the operator's heap were
free pages glibc kept)."""

from __future__ import annotations

import asyncio
import sys

import pytest
from marketplace_operator import memtrim


async def test_the_trim_runs_every_interval_until_cancelled() -> None:
    trims: list[float] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > 3:
            raise asyncio.CancelledError

    def trim() -> bool:
        trims.append(1.0)
        return True

    with pytest.raises(asyncio.CancelledError):
        await memtrim.trim_forever(trim, interval=7.0, sleep=sleep)
    assert slept == [7.0] * 4
    assert len(trims) == 3  # one after each full pause


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_on_glibc_the_trim_gives_freed_memory_back() -> None:
    trim = memtrim.libc_trim()
    assert trim is not None
    garbage = [bytearray(4096) for _ in range(20_000)]  # 80 MiB of small blocks
    pin = bytearray(4096)  # live above them: glibc cannot give them back as a free top
    del garbage
    assert trim() is True
    del pin
