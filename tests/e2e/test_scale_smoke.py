"""A short scale smoke (issue 15): 100 MarketplaceNodes on the local kubelet's node farm.

The full measurement at 100/300/1,000 is `make bench-scale`; this keeps the behaviour in
`make test`: every node becomes Ready, a BanList reaches every node, and a rollout at
maxUnavailable 10 % completes. The pods are annotated for the farm
(`local_kubelet.farm.SIMULATE_ANNOTATION`), so this runs on the ordinary test cluster:
each is scheduled, probed and gated like a real node's, and answers the node's own
admin API and policy door from the kubelet's event loop (about 90 MiB per real node
would not fit). Deadlines are generous (a loaded CI machine); the times are the bench's.
"""

from __future__ import annotations

from typing import Any

import pytest
import real_node
from e2e_helpers import OperatorProcess, custom_body, mnode_body, wait_for
from local_kubelet.farm import SIMULATE_ANNOTATION
from local_kubelet.node import LOCAL_KUBELET_LABEL
from marketplace_operator import k8s
from marketplace_operator.handlers.policy import BANLISTS
from marketplace_operator.policy import versioning
from marketplace_operator.render import names

N = 100
FLEET = "smoke"


def _ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return ready and status.get("observedGeneration") == obj["metadata"]["generation"]


def _all(kube: k8s.BlockingKube, namespace: str, test: Any) -> bool | None:
    nodes = kube.list(k8s.MNODES, namespace)
    return (len(nodes) == N and all(test(o) for o in nodes)) or None


@pytest.mark.timeout(720)  # about 3 min alone; 5 to 10 on a machine at load 20
def test_a_hundred_simulated_nodes_join_take_a_policy_and_roll(
    kube: k8s.BlockingKube, namespace: str, operator: OperatorProcess
) -> None:
    local = [
        n
        for n in kube.list(k8s.NODES, "")
        if (n["metadata"].get("labels") or {}).get(LOCAL_KUBELET_LABEL) == "true"
    ]
    if not local or real_node.ON_REAL_NODE:
        pytest.skip("scale smoke: no local-kubelet Node (its node farm simulates the 100 nodes)")
    fleet = custom_body("MarketplaceFleet", FLEET, namespace, maxUnavailable=N // 10)
    kube.create(k8s.FLEETS, fleet)
    template = {"pod": {"metadata": {"annotations": {SIMULATE_ANNOTATION: "true"}}}}
    on_farm = {"nodeSelector": {LOCAL_KUBELET_LABEL: "true"}}  # never a real kubelet's Node
    for i in range(N):
        body = mnode_body(
            f"s{i}",
            namespace,
            fleet=FLEET,
            drainTimeoutSeconds=2,
            template=template,
            scheduling=on_farm,
        )
        kube.create(k8s.MNODES, body)
    wait_for(lambda: _all(kube, namespace, _ready), timeout=300, interval=2, what="all Ready")

    def version() -> int | None:
        cm = kube.get(k8s.CONFIGMAPS, namespace, names.policy_configmap_name(FLEET))
        return versioning.current_version(cm)

    before = version() or 0
    ban = custom_body(
        "BanList", "smoke-ban", namespace, fleet=FLEET,
        entries=[{"cidr": "203.0.113.0/24", "reason": "smoke"}],
    )  # fmt: skip
    kube.create(BANLISTS, ban)

    def everywhere() -> bool | None:
        want = version()
        return (
            want is not None
            and want > before
            and _all(
                kube,
                namespace,
                lambda o: ((o.get("status") or {}).get("policyVersion") or 0) >= want,
            )
        )

    wait_for(everywhere, timeout=60, interval=1, what="the BanList on every node")

    for i in range(N):
        kube.patch(k8s.MNODES, namespace, f"s{i}", {"spec": {"drainTimeoutSeconds": 3}})

    def rolled() -> bool | None:
        status = (kube.get(k8s.FLEETS, namespace, FLEET) or {}).get("status") or {}
        done = status.get("phase") == "Complete" and status.get("updated") == N
        return (done and not status.get("steps") and _all(kube, namespace, _ready)) or None

    wait_for(rolled, timeout=420, interval=2, what="the rollout complete")
