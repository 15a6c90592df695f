"""Relocation decisions: a lost Node's pod is deleted after the grace, a claim on a cordoned
or lost Node is re-made elsewhere, WaitForNode changes nothing, a serving pod is left be."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from marketplace_operator.model.mnode import RelocationSpec
from marketplace_operator.reconcile import relocation
from marketplace_operator.reconcile.observe import pod_view
from marketplace_operator.reconcile.relocation import NodeHealth

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
RELOCATE = RelocationSpec(node_lost_grace_seconds=60)
WAIT = RelocationSpec(when_node_unavailable="WaitForNode", node_lost_grace_seconds=60)


def not_ready_for(seconds: float) -> NodeHealth:
    return NodeHealth("n2", ready=False, not_ready_since=NOW - timedelta(seconds=seconds))


def pod(*, node: str | None = "n2", ready: bool = True, deleting: bool = False) -> Any:
    meta: dict[str, Any] = {"name": "m", "uid": "u"}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-04T09:59:00Z"
    return pod_view(
        {
            "metadata": meta,
            "spec": {"nodeName": node} if node else {},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
        }
    )


def claim(node: str | None = "n2", *, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "m-data", "uid": "c"}
    if node:
        meta["annotations"] = {relocation.SELECTED_NODE: node}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-04T09:59:00Z"
    return {"metadata": meta, "status": {"phase": "Bound"}}


def test_nodes_are_read_only_for_a_pod_that_is_not_serving_or_a_claim_without_pod() -> None:
    assert relocation.pods_node_to_check(pod()) is None  # serving: no Node read
    assert relocation.pods_node_to_check(pod(ready=False)) == "n2"
    assert relocation.pods_node_to_check(pod(deleting=True)) == "n2"  # stuck terminating?
    assert relocation.pods_node_to_check(None) is None
    assert relocation.claims_node_to_check(None, claim()) == "n2"
    assert relocation.claims_node_to_check(pod(node=None), claim()) == "n2"  # unscheduled
    assert relocation.claims_node_to_check(pod(), claim()) is None  # runs from it
    assert relocation.claims_node_to_check(None, claim(deleting=True)) is None
    assert relocation.claims_node_to_check(None, claim(node=None)) is None  # not a local one


@pytest.mark.parametrize(
    ("spec", "pod_node", "claim_node", "expected", "recheck"),
    [
        # the pod's Node is NotReady: wait out the grace, then delete the pod forcibly
        (RELOCATE, not_ready_for(10), None, None, 50.0),
        (RELOCATE, not_ready_for(61), None, relocation.ForceDeletePod("n2", "NodeLost"), None),
        (RELOCATE, NodeHealth("n2", exists=False, ready=False), None,
         relocation.ForceDeletePod("n2", "NodeDeleted"), None),
        (WAIT, not_ready_for(61), None, relocation.WaitForNode("n2", "NodeLost: n2"), None),
        (RELOCATE, NodeHealth("n2"), None, None, None),  # Ready (the pod only starting)
        (RELOCATE, NodeHealth("n2", cordoned=True), None, None, None),  # a drain evicts it
        # no pod runs and the claim's Node is cordoned (drained) or lost: a new claim
        (RELOCATE, None, NodeHealth("n2", cordoned=True),
         relocation.RelocateVolume("n2", "NodeCordoned"), None),
        (RELOCATE, None, not_ready_for(61), relocation.RelocateVolume("n2", "NodeLost"), None),
        (RELOCATE, None, not_ready_for(30), None, 30.0),
        (WAIT, None, NodeHealth("n2", cordoned=True),
         relocation.WaitForNode("n2", "NodeCordoned: n2"), None),
        (RELOCATE, None, NodeHealth("n2"), None, None),  # healthy: the pod goes back there
    ],
)  # fmt: skip
def test_decisions(
    spec: RelocationSpec,
    pod_node: NodeHealth | None,
    claim_node: NodeHealth | None,
    expected: relocation.Action | None,
    recheck: float | None,
) -> None:
    verdict = relocation.decide(spec, pod_node=pod_node, claim_node_health=claim_node, now=NOW)
    assert verdict.action == expected
    assert verdict.recheck_in == recheck


def test_a_node_object_is_read_for_readiness_cordon_and_since_when() -> None:
    ready: dict[str, str] = {
        "type": "Ready", "status": "Unknown", "lastTransitionTime": "2026-12-04T09:58:00Z"
    }  # fmt: skip
    node = {"spec": {"unschedulable": True}, "status": {"conditions": [ready]}}
    health = relocation.node_health("n2", node)
    assert health == NodeHealth(
        "n2", cordoned=True, ready=False, not_ready_since=NOW - timedelta(minutes=2)
    )
    ready.update(reason="NodeStatusUnknown", message="Kubelet stopped posting node status.")
    assert relocation.node_health("n2", node).why == (
        "NodeStatusUnknown: Kubelet stopped posting node status."
    )
    assert relocation.node_health("n2", None).exists is False
    assert relocation.node_health("n2", {"status": {"conditions": [
        {"type": "Ready", "status": "True"}]}}).ready  # fmt: skip


def test_a_pod_on_a_not_ready_node_within_its_grace_is_reported_so() -> None:
    """The chaos suite's killed kubelet: the pod's state is unknown until the grace ends.
    The status must say so (during a rollout it read "Replacing"), with a message that does
    not change while the grace runs (a countdown would rewrite the status every pass)."""
    lost = NodeHealth("n2", ready=False, not_ready_since=NOW - timedelta(seconds=10),
                      why="NodeStatusUnknown: Kubelet stopped posting node status.")  # fmt: skip
    early = relocation.decide(RELOCATE, pod_node=lost, claim_node_health=None, now=NOW)
    later = relocation.decide(
        RELOCATE, pod_node=lost, claim_node_health=None, now=NOW + timedelta(seconds=40)
    )
    assert early.action is None
    assert early.node_unready is not None
    assert early.node_unready == later.node_unready
    assert "n2" in early.node_unready
    assert "Kubelet stopped posting node status" in early.node_unready
    assert "60 s" in early.node_unready
    waiting = relocation.decide(WAIT, pod_node=lost, claim_node_health=None, now=NOW)
    assert waiting.node_unready is not None
    assert "WaitForNode" in waiting.node_unready
    # A Ready Node (the pod only starting), or past the grace (acted on): nothing to add.
    for health, now in ((NodeHealth("n2"), NOW), (lost, NOW + timedelta(seconds=61))):
        verdict = relocation.decide(RELOCATE, pod_node=health, claim_node_health=None, now=now)
        assert verdict.node_unready is None
