"""`nodeloop.decide`: one pass's gate, status and Event from what was observed, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marketplace_operator import nodeloop
from marketplace_operator.model.mnode import MarketplaceNodeSpec, Phase
from marketplace_operator.reconcile import gate
from marketplace_operator.reconcile import node as plan
from marketplace_operator.render import names, pod
from marketplace_protocol.admin import NodeStatus

REF = names.NodeRef(name="n1", namespace="ns", uid="uid-1", fleet="blue")
WALL = datetime(2026, 1, 1, tzinfo=UTC)
TOLERANCE = gate.Tolerance(failures=3, silence=15)


def desired() -> plan.Desired:
    spec = MarketplaceNodeSpec.model_validate({"fleet": "blue"})
    return plan.Desired(ref=REF, spec=spec, pod_inputs=pod.PodInputs("img", spec))


def running_pod(*, joined: bool) -> dict[str, Any]:
    d = desired()
    body = pod.pod(d.ref, d.pod_inputs)
    body["metadata"]["uid"] = "pod-1"
    flag = "True" if joined else "False"
    body["status"] = {
        "phase": "Running",
        "podIP": "127.1.0.5",
        "conditions": [
            {"type": "Ready", "status": flag},
            {"type": "ContainersReady", "status": "True"},
            {"type": names.JOINED_CONDITION, "status": flag},
        ],
        "containerStatuses": [
            {"name": "node", "restartCount": 0, "started": True, "state": {"running": {}}}
        ],
    }
    return body


BODY = {"metadata": {"name": "n1", "namespace": "ns", "uid": "uid-1", "generation": 1}}


def decide(pod_body: dict[str, Any], poll: nodeloop.Poll, **kw: Any) -> nodeloop.Decision:
    args: dict[str, Any] = {
        "memory": None,
        "since_last_write": None,
        "now": 100.0,
        "wall": WALL,
        "tolerance": TOLERANCE,
        "policy_required": True,
    }
    args.update(kw)
    return nodeloop.decide(
        BODY, nodeloop.Views(pod=pod_body), desired(), poll, nodeloop.Findings(), **args
    )


def test_a_node_that_answers_with_its_policy_gets_its_gate_and_is_ready_now() -> None:
    got = decide(
        running_pod(joined=False),
        nodeloop.Poll(NodeStatus(peer_id="p", ready=True, policy_version=1)),
    )
    assert got.set_gate is True
    assert got.delay == 0.0
    assert got.patch["phase"] == "Starting"  # the pod's gate shows on the next pass
    assert got.memory is not None
    assert got.memory.failures == 0


def test_a_node_without_a_policy_does_not_get_its_gate() -> None:
    got = decide(running_pod(joined=False), nodeloop.Poll(NodeStatus(peer_id="p", ready=True)))
    assert got.set_gate is None


def test_one_failed_poll_of_a_joined_node_keeps_its_gate_and_remembers_it() -> None:
    got = decide(running_pod(joined=True), nodeloop.Poll())
    assert got.set_gate is None
    assert got.memory is not None
    assert got.memory.failures == 1
    assert got.status.phase is Phase.READY


def test_a_rejected_token_is_a_warning_event_and_degraded() -> None:
    got = decide(running_pod(joined=False), nodeloop.Poll(rejected="status: unauthenticated"))
    assert got.status.phase is Phase.DEGRADED
    assert got.event is not None
    assert got.event[0] is True
    assert "admin token" in got.event[1]


def test_peer_count_changes_alone_are_paced() -> None:
    ready = decide(
        running_pod(joined=True),
        nodeloop.Poll(NodeStatus(peer_id="p", ready=True, policy_version=1)),
    )
    body = {**BODY, "status": ready.patch}
    got = nodeloop.decide(
        body,
        nodeloop.Views(pod=running_pod(joined=True)),
        desired(),
        nodeloop.Poll(NodeStatus(peer_id="p", ready=True, policy_version=1, peers=[])),
        nodeloop.Findings(),
        memory=ready.memory,
        since_last_write=1.0,
        now=101.0,
        wall=WALL,
        tolerance=TOLERANCE,
        policy_required=True,
    )
    assert got.patch == {}
    assert got.delay is None
    assert got.event is None
