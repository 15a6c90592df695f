"""Waiting with a deadline: call a probe until it holds, fail the test with what was last seen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

T = TypeVar("T")


@dataclass(frozen=True)
class NotYet:
    """A probe's falsy "not yet" that says what it saw: `wait_for`'s timeout prints it, so a
    wait that fails once in a clean clone leaves the state that made it fail."""

    seen: str

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return self.seen


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
