"""Drain: readiness drops at once, new work refused, in-flight work finishes, hand-offs bounded."""

from __future__ import annotations

import asyncio

import pytest
from marketplace_node.drain import DrainCoordinator
from marketplace_protocol import errors
from marketplace_protocol.admin import DrainState
from marketplace_protocol.clock import FakeClock


@pytest.fixture
def drain() -> DrainCoordinator:
    return DrainCoordinator(FakeClock(), timeout=2.0)


async def test_tracks_work_in_flight(drain: DrainCoordinator) -> None:
    with drain.track():
        with drain.track():
            assert drain.in_flight == 2
        assert drain.in_flight == 1
    assert drain.in_flight == 0
    with pytest.raises(KeyError), drain.track():
        raise KeyError("handler failed")
    assert drain.in_flight == 0


async def test_drain_refuses_new_work_and_waits_for_in_flight(drain: DrainCoordinator) -> None:
    finished = asyncio.Event()

    async def request() -> None:
        with drain.track():
            await asyncio.sleep(0.05)
        finished.set()

    task = asyncio.create_task(request())
    await asyncio.sleep(0)
    status = drain.drain()
    assert status.state is DrainState.DRAINING
    assert status.in_flight == 1
    assert status.started_at is not None
    assert not drain.ready
    with pytest.raises(errors.Draining) as caught, drain.track():
        pass
    assert caught.value.retryable
    assert caught.value.http_status == 503
    async with asyncio.timeout(5):
        final = await drain.wait()
    assert finished.is_set()
    assert final.state is DrainState.DRAINED
    await task


async def test_hand_offs_run_after_in_flight_and_count_providers(drain: DrainCoordinator) -> None:
    order: list[str] = []

    async def providers() -> int:
        order.append("providers")
        return 7

    async def leaving() -> int:
        order.append("leaving")
        return 0

    drain.add_handoff("providers", providers)
    drain.add_handoff("leaving", leaving)
    drain.drain()
    async with asyncio.timeout(5):
        status = await drain.wait()
    assert sorted(order) == ["leaving", "providers"]
    assert status.handed_off_providers == 7


async def test_everything_ends_within_the_timeout(drain: DrainCoordinator) -> None:
    async def stuck_request() -> None:
        with drain.track():
            await asyncio.sleep(60)

    async def stuck_handoff() -> int:
        await asyncio.sleep(60)
        return 1

    async def failing_handoff() -> int:
        raise ConnectionError("peer gone")

    request = asyncio.create_task(stuck_request())
    await asyncio.sleep(0)
    drain.add_handoff("stuck", stuck_handoff)
    drain.add_handoff("failing", failing_handoff)
    loop = asyncio.get_running_loop()
    started = loop.time()
    drain.drain(timeout=0.4)
    async with asyncio.timeout(5):
        status = await drain.wait()
    took = loop.time() - started
    assert status.state is DrainState.DRAINED
    assert status.handed_off_providers == 0
    assert 0.35 <= took < 1.0
    with pytest.raises(errors.Draining):  # cut off at the deadline: an answer, not a vanishing
        await request


async def test_second_signal_ends_the_drain_promptly(drain: DrainCoordinator) -> None:
    async def stuck_request() -> None:
        with drain.track():
            await asyncio.sleep(60)

    request = asyncio.create_task(stuck_request())
    await asyncio.sleep(0)
    drain.handle_signal()
    assert drain.state is DrainState.DRAINING
    drain.handle_signal()
    async with asyncio.timeout(0.5):
        status = await drain.wait()
    assert status.state is DrainState.DRAINED
    with pytest.raises(errors.Draining):
        await request


async def test_drain_is_idempotent(drain: DrainCoordinator) -> None:
    first = drain.drain()
    second = drain.drain(timeout=100)
    assert first.started_at == second.started_at
    async with asyncio.timeout(5):
        await drain.wait()
    assert drain.drain().state is DrainState.DRAINED


async def test_cut_off_answers_only_the_work_still_in_flight(drain: DrainCoordinator) -> None:
    async def nested_stuck_request() -> None:
        with drain.track(), drain.track():
            await asyncio.sleep(60)

    async def quick_request() -> str:
        with drain.track():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # outside track(): never cancelled by the drain
        return "done"

    stuck = asyncio.create_task(nested_stuck_request())
    quick = asyncio.create_task(quick_request())
    await asyncio.sleep(0)
    drain.drain(timeout=0.1)
    async with asyncio.timeout(5):
        await drain.wait()
        with pytest.raises(errors.Draining):
            await stuck
        assert await quick == "done"
    assert drain.in_flight == 0
    assert not stuck.cancelling()


async def test_a_callers_own_cancellation_stays_a_cancellation(drain: DrainCoordinator) -> None:
    async def request() -> None:
        with drain.track():
            await asyncio.sleep(60)

    task = asyncio.create_task(request())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert drain.in_flight == 0


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DrainCoordinator(FakeClock(), timeout=0)


async def test_a_signal_while_serving_turns_readiness_off_but_serves_until_the_settle_ends() -> (
    None
):
    drain = DrainCoordinator(FakeClock(), timeout=2.0, settle=0.2)
    drain.handle_signal()
    assert not drain.ready  # load balancers and clients move on
    with drain.track():  # a client that has not seen it yet is still served
        assert drain.in_flight == 1
    assert drain.state is DrainState.SERVING
    await asyncio.sleep(0.3)
    assert drain.status().state is not DrainState.SERVING  # then the drain runs
    with pytest.raises(errors.Draining), drain.track():
        pass
    assert (await drain.wait()).state is DrainState.DRAINED


async def test_a_signal_after_the_operators_drain_adds_no_settle() -> None:
    drain = DrainCoordinator(FakeClock(), timeout=2.0, settle=30.0)
    drain.drain()  # the rollout drained it through the admin API
    drain.handle_signal()
    assert (await asyncio.wait_for(drain.wait(), 5)).state is DrainState.DRAINED


async def test_a_second_signal_during_the_settle_ends_it_at_once() -> None:
    drain = DrainCoordinator(FakeClock(), timeout=2.0, settle=30.0)
    drain.handle_signal()
    drain.handle_signal()
    assert (await asyncio.wait_for(drain.wait(), 5)).state is DrainState.DRAINED
