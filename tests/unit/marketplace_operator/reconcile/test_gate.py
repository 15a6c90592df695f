"""`reconcile.gate.decide`: the `joined` gate's hysteresis against failed status polls."""

from __future__ import annotations

from typing import Any

import pytest
from marketplace_operator.model.fleet import LEAVING_ANNOTATION
from marketplace_operator.reconcile.gate import (
    GateInputs,
    OthersOf,
    PollMemory,
    Tolerance,
    awaiting_join,
    decide,
)
from marketplace_operator.reconcile.observe import pod_view
from marketplace_operator.render.names import JOINED_CONDITION
from marketplace_protocol.admin import NodeStatus, PeerInfo

TOL = Tolerance(failures=3, silence=10.0)
T0 = 1000.0


def answer(*, ready: bool = True, peers: tuple[str, ...] = ("mpother0",), **kw: Any) -> NodeStatus:
    return NodeStatus(
        peer_id="mpself00",
        ready=ready,
        peers=[PeerInfo(peer_id=p, address="http://x:1") for p in peers],
        **kw,
    )


def inputs(node: NodeStatus | None, *, on: bool = True, leaving: bool = False) -> GateInputs:
    return GateInputs(
        node=node,
        gate_on=on,
        leaving=leaving,
        fleet_peer_ids=frozenset({"mpother0"}),
        has_other_members=True,
        current_policy_version=4,
    )


def memory(failures: int = 0, last_answer: float = T0) -> PollMemory:
    return PollMemory(pod_uid="uid-1", failures=failures, last_answer=last_answer)


GOOD = answer(policyVersion=4)


@pytest.mark.parametrize(
    ("case", "inp", "mem", "now", "expected"),
    [
        # An answer decides at once, whatever the history.
        ("healthy", inputs(GOOD), memory(2, T0 - 100), T0, True),
        ("healthy, gate was off", inputs(GOOD, on=False), memory(), T0, True),
        ("not ready", inputs(answer(ready=False, policyVersion=4)), memory(), T0, False),
        ("draining", inputs(answer(draining=True, policyVersion=4)), memory(), T0, False),
        ("no fleet peers", inputs(answer(peers=(), policyVersion=4)), memory(), T0, False),
        ("behind on policy", inputs(answer(policyVersion=3)), memory(), T0, False),
        ("leaving", inputs(GOOD, leaving=True), memory(), T0, False),
        # An unanswered poll keeps an ON gate on within the tolerance ...
        ("first failure", inputs(None), memory(0), T0 + 1, True),
        ("second failure", inputs(None), memory(1), T0 + 6, True),
        # ... and turns it off past either bound.
        ("third failure", inputs(None), memory(2), T0 + 2, False),
        ("silence", inputs(None), memory(0), T0 + 10, False),
        # It never turns a gate on, and a leaving pod goes off at once.
        ("failure, gate off", inputs(None, on=False), memory(0), T0 + 1, False),
        ("failure, leaving", inputs(None, leaving=True), memory(0), T0 + 1, False),
    ],
)
def test_decide(case: str, inp: GateInputs, mem: PollMemory, now: float, expected: bool) -> None:
    gate, _ = decide(inp, mem, now=now, tolerance=TOL)
    assert gate is expected, case


def test_answer_resets_the_history() -> None:
    _, after = decide(inputs(GOOD), memory(2, T0 - 50), now=T0, tolerance=TOL)
    assert after == PollMemory(pod_uid="uid-1", failures=0, last_answer=T0)


def test_failure_counts_and_keeps_the_last_answer() -> None:
    _, after = decide(inputs(None), memory(1, T0), now=T0 + 3, tolerance=TOL)
    assert after == PollMemory(pod_uid="uid-1", failures=2, last_answer=T0)


def test_flap_is_absorbed_then_a_real_outage_turns_the_gate_off() -> None:
    """The sequence a slow machine produces: one miss, an answer, then a node gone quiet."""
    mem, on, seen = memory(), True, []
    for now, node in [(1.0, None), (2.0, GOOD), (3.0, None), (4.0, None), (5.0, None)]:
        on, mem = decide(inputs(node, on=on), mem, now=T0 + now, tolerance=TOL)
        seen.append(on)
    assert seen == [True, True, True, True, False]


def test_after_an_operator_restart() -> None:
    """Fresh memory: an ON gate survives a failed first poll; an OFF one needs an answer."""
    fresh = PollMemory.fresh("uid-1", T0)
    assert decide(inputs(None, on=True), fresh, now=T0, tolerance=TOL)[0] is True
    assert decide(inputs(None, on=False), fresh, now=T0, tolerance=TOL)[0] is False
    assert decide(inputs(GOOD, on=False), fresh, now=T0, tolerance=TOL)[0] is True


def _pod(
    phase: str,
    *,
    started: bool,
    ready: bool,
    deleting: bool = False,
    joined: bool = False,
    leaving: bool = False,
) -> Any:
    meta: dict[str, Any] = {"name": "n", "uid": "u"}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-25T00:00:00Z"
    if leaving:
        meta["annotations"] = {LEAVING_ANNOTATION: "2026-11-25T00:00:00Z"}
    return pod_view(
        {
            "metadata": meta,
            "status": {
                "phase": phase,
                "conditions": [
                    {"type": "Ready", "status": "True" if ready else "False"},
                    {"type": JOINED_CONDITION, "status": "True" if joined else "False"},
                ],
                "containerStatuses": [{"name": "node", "started": started}],
            },
        }
    )


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (None, False),
        (_pod("Pending", started=False, ready=False), False),
        # Running but the process has not passed its startup probe: nothing to poll yet.
        (_pod("Running", started=False, ready=False), False),
        (_pod("Running", started=True, ready=False), True),
        (_pod("Running", started=True, ready=True), False),
        (_pod("Running", started=True, ready=False, deleting=True), False),
        # Its gate is on: what is left is the kubelet's to report (its Ready), not the node's.
        (_pod("Running", started=True, ready=False, joined=True), False),
        # Its gate went off because the rollout is taking it out of service: not joining.
        (_pod("Running", started=True, ready=False, leaving=True), False),
    ],
)
def test_awaiting_join_only_once_the_node_answers(pod: Any, expected: bool) -> None:
    assert awaiting_join(pod) is expected


@pytest.mark.parametrize(
    ("ids", "own"),
    [
        (frozenset({"a", "b", "c"}), "b"),
        (frozenset({"a", "b"}), "z"),  # its id not (yet) among the fleet's
        (frozenset(), None),
        (frozenset({"a"}), None),
    ],
)
def test_others_of_is_the_set_without_the_member(ids: frozenset[str], own: str | None) -> None:
    others = OthersOf(ids, own)
    expected = ids - {own}
    assert frozenset(others) == expected
    assert len(others) == len(expected)
    assert all((i in others) == (i in expected) for i in [*ids, "zz", own])
