"""Waiting with a deadline: call a probe until it holds, fail the test with what was last seen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str = "condition",
    interval: float = 0.2,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """Call `probe` until it returns something truthy (errors in `ignoring` count as not yet);
    fail after `within` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = probe()
        except ignoring as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


async def until(predicate: Callable[[], bool], *, within: float, interval: float = 0.02) -> float:
    """Seconds until `predicate()` holds on this event loop; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not predicate():
        if loop.time() - started > within:
            pytest.fail(f"not within {within} s")
        await asyncio.sleep(interval)
    return loop.time() - started
