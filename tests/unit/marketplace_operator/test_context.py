"""One per-node state in the Context, dropped when nothing of the node is left (issue 16,
item 11): a fleet of short-lived nodes does not grow the operator's memory."""

from __future__ import annotations

from marketplace_operator.context import (
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
    answers = RecentAnswers(1.0, clock=lambda: now[0])
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
