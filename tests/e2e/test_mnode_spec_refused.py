"""A spec the operator cannot act on, or a volume that differs from the spec, shows on the
MarketplaceNode's status (issue #19, defects 5 and 6), never as Ready or a silent retry."""

from __future__ import annotations

import time
from typing import Any

from e2e_helpers import OperatorProcess, condition, mnode_body, wait_for
from marketplace_operator import k8s
from test_mnode_lifecycle import events_for

MANAGED = {"app.kubernetes.io/managed-by": "marketplace-operator"}


def _degraded(
    kube: k8s.BlockingKube, namespace: str, name: str, reason: str
) -> dict[str, Any] | None:
    obj = kube.get(k8s.MNODES, namespace, name)
    degraded = condition(obj, "Degraded")
    if degraded is None or (degraded["status"], degraded["reason"]) != ("True", reason):
        return None
    return obj


def test_a_spec_the_api_server_refuses_is_degraded_with_its_message_once(
    kube: k8s.BlockingKube, namespace: str, operator: OperatorProcess
) -> None:
    # The CRD allows any resource name; the API server refuses a pod asking for "widgets".
    body = mnode_body("greedy", namespace, resources={"requests": {"widgets": "1"}})
    kube.create(k8s.MNODES, body)
    obj = wait_for(
        lambda: _degraded(kube, namespace, "greedy", "SpecRejected"),
        timeout=60,
        what="Degraded=True SpecRejected",
    )
    assert obj["status"]["phase"] == "Degraded"
    assert "widgets" in obj["status"]["message"], obj["status"]
    ready = condition(obj, "Ready")
    assert ready is not None
    assert ready["status"] == "False"
    time.sleep(12)  # more than two of the old 5 s retries
    warnings = [e for e in events_for(kube, namespace, "greedy") if e.get("type") == "Warning"]
    assert [e["reason"] for e in warnings] == ["Degraded"], warnings
    assert warnings[0].get("count", 1) == 1


def test_a_claim_of_another_class_is_never_ready(
    kube: k8s.BlockingKube, namespace: str, operator: OperatorProcess
) -> None:
    """A data claim already there (adopted by its labels) with another StorageClass than
    the spec asks for: the node runs on it, but its status says the volume differs."""
    kube.create(
        k8s.PVCS,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": "odd-data",
                "namespace": namespace,
                "labels": {**MANAGED, "app.kubernetes.io/instance": "odd"},
            },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "local-dir",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    kube.create(k8s.MNODES, mnode_body("odd", namespace, storage={"storageClassName": "fast"}))

    def pod_ready() -> bool:
        pod = kube.get(k8s.PODS, namespace, "odd")
        return any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in ((pod or {}).get("status") or {}).get("conditions") or []
        )

    wait_for(pod_ready, timeout=90, what="the node's pod serving")
    obj = wait_for(
        lambda: _degraded(kube, namespace, "odd", "VolumeMismatch"),
        timeout=30,
        what="Degraded=True VolumeMismatch",
    )
    assert "local-dir" in obj["status"]["message"]
    ready = condition(obj, "Ready")
    assert ready is not None
    assert ready["status"] == "False"
