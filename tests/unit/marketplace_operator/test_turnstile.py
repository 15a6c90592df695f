"""The node passes' turnstile: bounded, urgent waiters first, nothing lost to cancellation."""

from __future__ import annotations

import asyncio

import pytest
from marketplace_operator.turnstile import Turnstile


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_urgent_waiters_go_first_each_kind_in_arrival_order() -> None:
    turns = Turnstile(1)
    order: list[str] = []
    release = asyncio.Event()

    async def holder(name: str, *, urgent: bool) -> None:
        async with turns.turn(urgent=urgent):
            order.append(name)
            await release.wait()

    first = asyncio.create_task(holder("first", urgent=False))
    await _settle()
    waiters = [
        asyncio.create_task(holder(name, urgent=name.startswith("u")))
        for name in ("r1", "u1", "r2", "u2")
    ]
    await _settle()
    assert order == ["first"]
    assert turns.waiting() == (2, 2)
    release.set()
    await asyncio.gather(first, *waiters)
    assert order == ["first", "u1", "u2", "r1", "r2"]
    assert turns.waiting() == (0, 0)


@pytest.mark.parametrize("size", [1, 3])
async def test_never_more_holders_than_turns(size: int) -> None:
    turns = Turnstile(size)
    inside = peak = 0

    async def one(i: int) -> None:
        nonlocal inside, peak
        async with turns.turn(urgent=i % 3 == 0):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.001)
            inside -= 1

    await asyncio.gather(*(one(i) for i in range(30)))
    assert peak == size
    # every turn is back: `size` can be held at once again without waiting
    for _ in range(size):
        await asyncio.wait_for(turns.acquire(), 0.1)
    assert turns.waiting() == (0, 0)


async def test_a_released_turn_goes_to_the_waiter_not_a_newcomer() -> None:
    turns = Turnstile(1)
    await turns.acquire()
    waiter = asyncio.create_task(turns.acquire())
    await _settle()
    turns.release()
    newcomer = asyncio.create_task(turns.acquire())  # arrives before the waiter runs
    await _settle()
    assert waiter.done()
    assert not newcomer.done()
    turns.release()
    await asyncio.wait_for(newcomer, 0.1)


async def test_a_cancelled_waiter_takes_no_turn_and_one_handed_a_turn_passes_it_on() -> None:
    turns = Turnstile(1)
    await turns.acquire()
    gone = asyncio.create_task(turns.acquire(urgent=True))
    await _settle()
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert turns.waiting() == (0, 0)
    # handed the turn and cancelled before it ran: the next waiter gets it
    handed = asyncio.create_task(turns.acquire())
    after = asyncio.create_task(turns.acquire())
    await _settle()
    turns.release()  # to `handed`, whose task has not run since
    handed.cancel()
    await asyncio.gather(handed, return_exceptions=True)
    await asyncio.wait_for(after, 0.1)
    assert turns.waiting() == (0, 0)
