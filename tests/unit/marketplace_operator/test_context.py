"""One per-node state in the Context, dropped when nothing of the node is left (issue 16,
item 11): a fleet of short-lived nodes does not grow the operator's memory."""

from __future__ import annotations

import pytest
from marketplace_operator.context import (
    ANSWERS_KEPT_SECONDS,
    REUSED_ANSWER_SECONDS,
    Answer,
    Context,
    NodeState,
    PushedMembers,
    RecentAnswers,
    Wakeups,
)
from marketplace_operator.model.mnode import Phase
from marketplace_operator.reconcile.gate import PollMemory
from marketplace_protocol.admin import NodeStatus

from tests.support.operator_context import bare_context

KEY = ("ns", "n1")


def context() -> Context:
    return bare_context()


def test_a_node_state_is_released_only_when_nothing_is_left() -> None:
    ctx = context()
    state = ctx.node(KEY)
    assert ctx.node(KEY) is state
    state.phase = Phase.READY
    state.poll = PollMemory.fresh("pod-1", 0.0)
    state.pod_address = ("127.1.0.5", False, "pod-1")
    assert ctx.phases() == {KEY: Phase.READY}
    # The node's loop ends: its own fields go, the pod is still there.
    state.phase = state.poll = None
    ctx.release(KEY)
    assert KEY in ctx.node_states
    # The pod goes too: nothing is left.
    state.pod_address = None
    ctx.release(KEY)
    assert ctx.node_states == {}
    assert ctx.phases() == {}


def test_an_idle_state_is_empty() -> None:
    assert NodeState().idle()
    assert not NodeState(pushed_members=PushedMembers("pod-1", "digest", 0.0, 2)).idle()


def test_wakeups_count_the_node_loops_not_the_fleet_loops() -> None:
    wakeups = Wakeups()
    first = wakeups.register(("ns", "n0"))
    assert wakeups.register(("ns", "n0")) is first  # once per key
    wakeups.register(("ns", "n1"))
    wakeups.register(("ns", "marketplacefleets/default"), node=False)
    assert wakeups.nodes() == 2
    wakeups.unregister(("ns", "n0"))
    wakeups.unregister(("ns", "n0"))
    wakeups.unregister(("ns", "marketplacefleets/default"))
    assert wakeups.nodes() == 1


def test_only_answers_young_enough_to_be_reused_are_kept() -> None:
    """One answer per node, each listing up to 64 peers, kept until its next poll was
    30 MiB at 1,000 nodes: only those of the last `ttl` seconds are kept."""
    now = [100.0]
    answers = RecentAnswers(lambda: 1.0, clock=lambda: now[0])
    node = NodeStatus(peer_id="mp1", ready=True)
    answers.put(("ns", "n0"), Answer("pod-0", 99.5, node))
    answers.put(("ns", "n1"), Answer("pod-1", 100.0, node))
    assert answers.get(("ns", "n0")) is not None
    now[0] = 100.6  # n0's answer is 1.1 s old: gone
    assert answers.get(("ns", "n0")) is None
    assert len(answers) == 1
    answers.put(("ns", "n1"), Answer("pod-1", 100.6, node))  # answered again: kept longer
    now[0] = 101.5
    assert answers.get(("ns", "n1")) == Answer("pod-1", 100.6, node)
    answers.drop(("ns", "n1"))  # its loop ended, or its pod went
    assert len(answers) == 0


def test_answers_kept_stretch_with_the_ttl_asked_at_each_use() -> None:
    now, ttl = [100.0], [1.0]
    answers = RecentAnswers(lambda: ttl[0], clock=lambda: now[0])
    answers.put(("ns", "n0"), Answer("pod-0", 100.0, NodeStatus(peer_id="mp1", ready=True)))
    now[0] = 105.0
    ttl[0] = 10.0  # the fleet grew: its answers are reused for longer, so kept longer
    assert answers.get(("ns", "n0")) is not None
    ttl[0] = 4.0
    assert answers.get(("ns", "n0")) is None


@pytest.mark.parametrize(
    ("nodes", "event_reuse", "write_interval", "kept"),
    [
        (1, REUSED_ANSWER_SECONDS, 0.01, REUSED_ANSWER_SECONDS + 1.0),
        (100, 5.0, 1.0, 6.0),  # a small fleet: as before the stretch
        (300, 15.0, 3.0, 16.0),
        (1_000, 50.0, 10.0, 51.0),  # the routine poll every 50 s: events reuse its answer
    ],
)
def test_reuse_and_paced_writes_stretch_with_the_fleet(
    nodes: int, event_reuse: float, write_interval: float, kept: float
) -> None:
    """Defaults: routine polls at most 20 a second, paced status writes at most 100."""
    ctx = bare_context()
    for i in range(nodes):
        ctx.wakeups.register(("ns", f"n{i}"))
    assert ctx.event_reuse() == pytest.approx(event_reuse)
    assert ctx.write_interval() == pytest.approx(write_interval)
    assert ctx.answers_kept() == pytest.approx(max(ANSWERS_KEPT_SECONDS, kept))
