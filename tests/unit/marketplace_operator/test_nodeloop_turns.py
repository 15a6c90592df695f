"""`nodeloop.run` takes a turn before a pass (at most `reconcile_concurrency` in flight),
and sleeps an interval paced by how many nodes are polled (`reconcile.pacing`).

A spec change to a whole fleet wakes every node's loop at once; each pass holds its
node's views, renderings and polled status while it awaits the API server or the node,
so passes in flight are what the operator's peak memory grows with (issue 15).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, cast

import pytest
from marketplace_operator import nodeloop
from marketplace_operator.context import REUSED_ANSWER_SECONDS, Context
from marketplace_operator.metrics import Metrics
from marketplace_operator.settings import Settings
from marketplace_operator.turnstile import Turnstile
from prometheus_client import CollectorRegistry


def context(turns: int) -> Context:
    return Context(
        settings=Settings(poll_interval_seconds=60, reconcile_concurrency=turns),
        kube=cast("Any", None),
        nodes=cast("Any", None),
        metrics=Metrics(CollectorRegistry(), phases=dict),
        tokens=cast("Any", None),
        passes=Turnstile(turns),
    )


@pytest.mark.parametrize("turns", [1, 3])
async def test_passes_in_flight_never_exceed_the_turns_and_views_wait_for_one(
    turns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = context(turns)
    in_flight = peak = gathered = 0
    done = asyncio.Event()
    nodes = 8

    async def one_pass(
        _ctx: Context, _body: Mapping[str, Any], _views: nodeloop.Views, **_: Any
    ) -> nodeloop.Outcome:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)  # awaiting the API server or the node
        in_flight -= 1
        return nodeloop.Outcome()

    def views() -> nodeloop.Views:
        nonlocal gathered
        gathered += 1
        assert in_flight < turns  # built only once this pass has its turn
        if gathered == nodes:
            done.set()
        return nodeloop.Views()

    monkeypatch.setattr(nodeloop, "reconcile_once", one_pass)
    loops = [
        asyncio.create_task(
            nodeloop.run(
                ctx,
                {"metadata": {"namespace": "ns", "name": f"n{i}"}},
                views,
                stopped=lambda: False,
            )
        )
        for i in range(nodes)
    ]
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.sleep(0.05)
    for loop in loops:
        loop.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    assert peak == turns


@pytest.mark.parametrize(
    ("joining", "expected"),
    [
        # 4 joining nodes at 2 start-up polls a second: each every 2 s (not 0.5 s, nor the
        # backed-off pace of a node joining for a while: they have just begun)
        (True, 2.0),
        # 4 nodes at 0.1 polls a second: each every 40 s (not 10 s)
        (False, 40.0),
    ],
)
async def test_the_loop_sleeps_the_interval_paced_by_how_many_nodes_are_polled(
    joining: bool, expected: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = context(8)
    ctx.settings = Settings(
        poll_interval_seconds=10,
        polls_per_second=0.1,
        startup_poll_interval_seconds=0.5,
        startup_polls_per_second=2,
    )
    nodes = 4
    slept: dict[str, float] = {}
    all_slept = asyncio.Event()

    async def one_pass(
        _ctx: Context, body: Mapping[str, Any], _views: nodeloop.Views, **_: Any
    ) -> nodeloop.Outcome:
        return nodeloop.Outcome(joining=joining)

    async def sleep(wake: asyncio.Event, seconds: float, *, debounce: float) -> None:
        slept[str(id(wake))] = seconds
        if len(slept) == nodes and ctx.wakeups.nodes() == nodes:
            all_slept.set()
        await asyncio.sleep(3600)

    monkeypatch.setattr(nodeloop, "reconcile_once", one_pass)
    monkeypatch.setattr(ctx.wakeups, "sleep", sleep)
    loops = [
        asyncio.create_task(
            nodeloop.run(
                ctx,
                {"metadata": {"namespace": "ns", "name": f"n{i}"}},
                nodeloop.Views,
                stopped=lambda: False,
            )
        )
        for i in range(nodes)
    ]
    await asyncio.wait_for(all_slept.wait(), 5)
    # Each loop slept after the others had registered or joined: the last one the full
    # paced interval, with its jitter of up to a tenth.
    assert expected <= max(slept.values()) <= expected * 1.1
    assert len(ctx.joining) == (nodes if joining else 0)
    for loop in loops:
        loop.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    assert ctx.wakeups.nodes() == 0  # a stopped loop is no longer counted
    assert not ctx.joining


async def test_a_node_joining_for_a_while_is_polled_at_the_backed_off_pace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Joining for 10 s already (a busy machine): its next poll in 2 s, not 0.5 s; once
    it has joined, it is no longer counted among the joining."""
    ctx = context(8)
    ctx.settings = Settings(startup_poll_interval_seconds=0.5, startup_polls_per_second=200)
    key = ("ns", "n0")
    ctx.joining[key] = time.monotonic() - 10.0
    slept: list[float] = []
    twice = asyncio.Event()
    joined = False

    async def one_pass(*_: Any, **__: Any) -> nodeloop.Outcome:
        return nodeloop.Outcome(joining=not joined)

    async def sleep(wake: asyncio.Event, seconds: float, *, debounce: float) -> None:
        nonlocal joined
        slept.append(seconds)
        joined = True
        if len(slept) == 2:
            twice.set()
            await asyncio.sleep(3600)

    monkeypatch.setattr(nodeloop, "reconcile_once", one_pass)
    monkeypatch.setattr(ctx.wakeups, "sleep", sleep)
    loop = asyncio.create_task(
        nodeloop.run(ctx, {"metadata": {"namespace": "ns", "name": "n0"}}, nodeloop.Views,
                     stopped=lambda: False)
    )  # fmt: skip
    await asyncio.wait_for(twice.wait(), 5)
    assert 2.0 <= slept[0] <= 2.2  # the cap, with its jitter
    assert key not in ctx.joining  # joined: the next pass's interval is the routine one
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)


async def test_a_wake_while_a_pass_waits_for_its_turn_is_seen_by_that_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Watch events for a node whose pass waits for a turn are in the views that pass
    reads once it has one: they make no second pass."""
    ctx = context(1)
    ctx.settings = Settings(poll_interval_seconds=300, reconcile_concurrency=1)
    passes = 0
    ran = asyncio.Event()

    async def one_pass(*_: Any, **__: Any) -> nodeloop.Outcome:
        nonlocal passes
        passes += 1
        ran.set()
        return nodeloop.Outcome()

    monkeypatch.setattr(nodeloop, "reconcile_once", one_pass)
    await ctx.passes.acquire()  # another node's pass holds the only turn
    loop = asyncio.create_task(
        nodeloop.run(ctx, {"metadata": {"namespace": "ns", "name": "n0"}}, nodeloop.Views,
                     stopped=lambda: False)
    )  # fmt: skip
    await asyncio.sleep(0.05)  # its first pass waits for the turn
    ctx.wakeups.wake(("ns", "n0"))  # events meanwhile
    ctx.wakeups.wake(("ns", "n0"))
    ctx.passes.release()
    await asyncio.wait_for(ran.wait(), 5)
    await asyncio.sleep(nodeloop.DEBOUNCE_SECONDS * 4)
    assert passes == 1  # without clearing at the turn: 2
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)


async def test_a_pass_that_comes_to_write_a_held_status_reuses_its_answer_and_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A status write held back 0.05 s brings a pass at that time (not the routine
    interval) which may use the answer the write was decided on; each pass is counted
    by what began it and how its status was had."""
    ctx = context(1)
    asked: list[float] = []
    twice = asyncio.Event()

    async def one_pass(*_: Any, reuse_within: float, **__: Any) -> nodeloop.Outcome:
        asked.append(reuse_within)
        if len(asked) == 2:
            twice.set()
        return nodeloop.Outcome(status_in=0.05 if len(asked) == 1 else None, poll="reused")

    monkeypatch.setattr(nodeloop, "reconcile_once", one_pass)
    loop = asyncio.create_task(
        nodeloop.run(ctx, {"metadata": {"namespace": "ns", "name": "n0"}}, nodeloop.Views,
                     stopped=lambda: False)
    )  # fmt: skip
    await asyncio.wait_for(twice.wait(), 5)  # the routine interval is 60 s
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    assert asked == [0.0, pytest.approx(0.05 + REUSED_ANSWER_SECONDS)]
    counted = ctx.metrics.registry.get_sample_value
    name = "marketplace_operator_node_passes_total"
    assert counted(name, {"trigger": "start", "poll": "reused"}) == 1
    assert counted(name, {"trigger": "write", "poll": "reused"}) == 1
    assert counted(name, {"trigger": "resync", "poll": "asked"}) == 0  # known, at 0


async def test_a_pass_for_an_unobserved_generation_takes_a_turn_before_routine_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A spec change and the rollout it starts wake many loops at once: the node whose
    status has not observed its generation is let in first, so its change is seen
    without queueing behind the rollout's passes."""
    ctx = context(1)
    order: list[str] = []
    both = asyncio.Event()

    async def one_pass(_ctx: Context, body: Mapping[str, Any], *_: Any, **__: Any) -> Any:
        order.append(body["metadata"]["name"])
        if len(order) == 2:
            both.set()
        return nodeloop.Outcome()

    def node(name: str, generation: int, observed: int) -> dict[str, Any]:
        meta = {"namespace": "ns", "name": name, "generation": generation}
        return {"metadata": meta, "status": {"observedGeneration": observed}}

    monkeypatch.setattr(nodeloop, "reconcile_once", one_pass)
    await ctx.passes.acquire()  # another node's pass holds the only turn
    routine = asyncio.create_task(
        nodeloop.run(ctx, node("routine", 2, 2), nodeloop.Views, stopped=lambda: False)
    )
    await asyncio.sleep(0.01)  # waits first
    changed = asyncio.create_task(
        nodeloop.run(ctx, node("changed", 3, 2), nodeloop.Views, stopped=lambda: False)
    )
    await asyncio.sleep(0.01)
    assert ctx.passes.waiting() == (1, 1)
    ctx.passes.release()
    await asyncio.wait_for(both.wait(), 5)
    assert order == ["changed", "routine"]
    waits = "marketplace_operator_pass_turn_wait_seconds_count"
    assert ctx.metrics.registry.get_sample_value(waits, {"urgent": "true"}) == 1
    assert ctx.metrics.registry.get_sample_value(waits, {"urgent": "false"}) == 1
    for loop in (routine, changed):
        loop.cancel()
    await asyncio.gather(routine, changed, return_exceptions=True)


@pytest.mark.parametrize(
    ("status", "urgent"),
    [
        (None, True),  # created: nothing observed yet
        ({}, True),
        ({"observedGeneration": 1}, True),
        ({"observedGeneration": 2}, False),
    ],
)
def test_unobserved_is_a_generation_the_status_has_not_seen(
    status: dict[str, Any] | None, urgent: bool
) -> None:
    body: dict[str, Any] = {"metadata": {"generation": 2}}
    if status is not None:
        body["status"] = status
    assert nodeloop.unobserved(body) is urgent
