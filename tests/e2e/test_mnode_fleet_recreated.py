"""A fleet deleted and created again under its name, while the operator keeps running, is
a new fleet (issue #19, defect 2): its policy ConfigMap gets the policy, its nodes are
reached with the new fleet's token, and no node is Ready before its policy is applied."""

from __future__ import annotations

from typing import Any

from e2e_helpers import OperatorProcess, condition, mnode_body, wait_for
from marketplace_operator import k8s
from marketplace_operator.model.common import GROUP, VERSION
from marketplace_operator.policy.versioning import VERSION_ANNOTATION

BANLISTS = k8s.Resource("banlists", GROUP, VERSION)
BANLIST = {
    "apiVersion": "marketplace.p2p.dev/v1alpha1",
    "kind": "BanList",
    "metadata": {"name": "spam"},
    "spec": {"fleet": "again", "entries": [{"peerId": "peerAAAAAAAA"}]},
}


def _ready_with_policy(kube: k8s.BlockingKube, namespace: str) -> dict[str, Any] | None:
    """The node once Ready; fails at once if Ready shows before PolicyApplied."""
    obj = kube.get(k8s.MNODES, namespace, "n1")
    ready = condition(obj, "Ready")
    if ready is None or ready["status"] != "True":
        return None
    applied = condition(obj, "PolicyApplied")
    assert applied is not None, obj
    assert applied["status"] == "True", f"Ready before its policy: {(obj or {}).get('status')}"
    return obj


def test_a_recreated_fleet_gets_its_policy_and_token_afresh(
    kube: k8s.BlockingKube, namespace: str, operator: OperatorProcess
) -> None:
    kube.create(BANLISTS, {**BANLIST, "metadata": {"name": "spam", "namespace": namespace}})
    for round_ in ("first", "again"):
        kube.create(k8s.MNODES, mnode_body("n1", namespace, fleet="again"))
        wait_for(lambda: _ready_with_policy(kube, namespace), timeout=90, what=f"{round_}: Ready")
        cm = kube.get(k8s.CONFIGMAPS, namespace, "again-policy")
        assert cm is not None
        assert "policy.json" in (cm.get("data") or {}), f"{round_}: {sorted(cm.get('data') or {})}"
        assert VERSION_ANNOTATION in cm["metadata"]["annotations"]
        kube.delete(k8s.MNODES, namespace, "n1")
        wait_for(
            lambda: (
                kube.get(k8s.CONFIGMAPS, namespace, "again-policy") is None
                and kube.get(k8s.SECRETS, namespace, "again-admin") is None
            ),
            timeout=60,
            what="the fleet's objects collected with its last node",
        )
    assert "refuses the fleet's admin token" not in operator.logs()
