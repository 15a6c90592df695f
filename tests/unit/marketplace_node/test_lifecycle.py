"""The lifecycle machine: only the listed transitions, idempotent and race-free start/stop."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from marketplace_node.lifecycle import TRANSITIONS, IllegalTransition, Lifecycle, State, advance

LEGAL = {
    ("created", "starting"),
    ("created", "stopped"),
    ("starting", "running"),
    ("starting", "stopping"),
    ("running", "draining"),
    ("running", "stopping"),
    ("draining", "stopping"),
    ("stopping", "stopped"),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(State, State)))
def test_exactly_the_documented_transitions_are_legal(current: State, target: State) -> None:
    if (current.value, target.value) in LEGAL:
        assert advance(current, target) is target
    else:
        with pytest.raises(IllegalTransition):
            advance(current, target)


def test_stopped_is_terminal() -> None:
    assert TRANSITIONS[State.STOPPED] == frozenset()


def state(life: Lifecycle) -> State:
    """The current state, read through a call so mypy does not narrow it across awaits."""
    return life.state


class Hooks:
    def __init__(self, *, start_delay: float = 0.0, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.start_delay = start_delay
        self.fail = fail

    async def on_start(self) -> None:
        self.calls.append("start")
        await asyncio.sleep(self.start_delay)
        if self.fail:
            raise OSError("port in use")

    async def on_stop(self) -> None:
        self.calls.append("stop")

    def lifecycle(self) -> Lifecycle:
        return Lifecycle(on_start=self.on_start, on_stop=self.on_stop)


async def test_start_and_stop_run_once_each() -> None:
    hooks = Hooks()
    life = hooks.lifecycle()
    await life.start()
    await life.start()
    assert state(life) is State.RUNNING
    await life.stop()
    await life.stop()
    assert state(life) is State.STOPPED
    assert hooks.calls == ["start", "stop"]


async def test_concurrent_starts_and_stops_do_not_interleave() -> None:
    hooks = Hooks(start_delay=0.05)
    life = hooks.lifecycle()
    async with asyncio.timeout(5):
        await asyncio.gather(life.start(), life.start(), life.stop(), life.stop())
    assert hooks.calls == ["start", "stop"]
    assert state(life) is State.STOPPED


async def test_stop_during_start_waits_for_it() -> None:
    hooks = Hooks(start_delay=0.05)
    life = hooks.lifecycle()
    starting = asyncio.create_task(life.start())
    await asyncio.sleep(0)
    assert state(life) is State.STARTING
    async with asyncio.timeout(5):
        await life.stop()
    assert starting.done()
    assert hooks.calls == ["start", "stop"]


async def test_a_failed_start_cleans_up_and_ends_stopped() -> None:
    hooks = Hooks(fail=True)
    life = hooks.lifecycle()
    with pytest.raises(OSError):
        await life.start()
    assert state(life) is State.STOPPED
    assert hooks.calls == ["start", "stop"]
    async with asyncio.timeout(1):
        await life.wait_stopped()


async def test_a_cancelled_start_cleans_up() -> None:
    hooks = Hooks(start_delay=10)
    life = hooks.lifecycle()
    task = asyncio.create_task(life.start())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state(life) is State.STOPPED
    assert hooks.calls == ["start", "stop"]


async def test_no_restart_after_stop() -> None:
    life = Hooks().lifecycle()
    await life.start()
    await life.stop()
    with pytest.raises(IllegalTransition):
        await life.start()


async def test_stop_before_start_skips_the_hooks() -> None:
    hooks = Hooks()
    life = hooks.lifecycle()
    await life.stop()
    assert state(life) is State.STOPPED
    assert hooks.calls == []


async def test_drain_only_from_running() -> None:
    life = Hooks().lifecycle()
    with pytest.raises(IllegalTransition):
        life.begin_drain()
    await life.start()
    life.begin_drain()
    life.begin_drain()
    assert state(life) is State.DRAINING
    assert not life.running
    await life.start()  # a no-op while draining, not a restart
    assert state(life) is State.DRAINING
    await life.stop()
    assert state(life) is State.STOPPED


async def test_loops_run_in_asyncio_debug_mode() -> None:
    assert asyncio.get_running_loop().get_debug()
