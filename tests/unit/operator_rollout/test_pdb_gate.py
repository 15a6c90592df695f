"""The fleet's PodDisruptionBudget and the replacement gate the node reconcile consults."""

from __future__ import annotations

from marketplace_operator.reconcile.fleet import MemberPod
from marketplace_operator.reconcile.observe import PodView
from marketplace_operator.render import names, pdb
from marketplace_operator.rollout import gate


def test_pdb_selects_the_fleets_node_pods_with_its_budget() -> None:
    body = pdb.pdb("blue", namespace="ns", max_unavailable=2, owner_uid="u")
    assert body["metadata"]["name"] == "blue-nodes"
    assert body["spec"]["maxUnavailable"] == 2
    selector = body["spec"]["selector"]["matchLabels"]
    pod_labels = names.node_labels(names.NodeRef("n", "ns", "x", "blue"))
    assert selector.items() <= pod_labels.items()
    other = names.node_labels(names.NodeRef("n", "ns", "x", "green"))
    assert not selector.items() <= other.items()
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u"
    assert body["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_pdb_drift() -> None:
    wanted = pdb.pdb("blue", namespace="ns", max_unavailable=1)
    assert not pdb.drifted(wanted, wanted)
    assert pdb.drifted(pdb.pdb("blue", namespace="ns", max_unavailable=3), wanted)


def _member(node: str, *, ready: bool) -> MemberPod:
    view = PodView(
        name=node,
        uid=f"u-{node}",
        phase="Running",
        ip="127.1.0.1",
        template_hash="old",
        deleting=False,
        ready=ready,
        containers_ready=ready,
        joined=ready,
        restarts=0,
        waiting_reason=None,
        waiting_message=None,
        controller_uid=None,
    )
    return MemberPod(node, view, 7070)


def test_gate_leaves_every_replacement_to_the_rollout() -> None:
    fleet = [_member("a", ready=True), _member("b", ready=False)]
    assert not gate.may_replace(fleet, "a")
    assert not gate.may_replace(fleet, "b")
