"""A short scale smoke (issue 15): 100 MarketplaceNodes on the local kubelet's node farm.

The full measurement at 100/300/1,000 is `make bench-scale`; this keeps the behaviour in
`make test`: every node becomes Ready, a BanList reaches every node, and a rollout at
maxUnavailable "10%" (10 of the 100 nodes, the PDB's budget too) completes. The pods are
annotated for the farm (`local_kubelet.farm.SIMULATE_ANNOTATION`), so this runs on the
ordinary test cluster: each is scheduled, probed and gated like a real node's, and answers
the node's own admin API and policy door from the kubelet's event loop (about 90 MiB per
real node would not fit). Deadlines are generous (a loaded CI machine); the times are the
bench's.
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
from marketplace_operator.render import names, pdb

N = 100
FLEET = "smoke"
BUDGET = N // 10  # what "10%" of the fleet's members resolves to


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
    fleet = custom_body("MarketplaceFleet", FLEET, namespace, maxUnavailable="10%")
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

    def min_available() -> int | None:
        found = kube.get(k8s.PDBS, namespace, pdb.pdb_name(FLEET))
        return found["spec"].get("minAvailable") if found is not None else None

    wait_for(lambda: min_available() == N - BUDGET, timeout=60, interval=1, what="the PDB at 10%")

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

    most_steps = 0

    def rolled() -> bool | None:
        nonlocal most_steps
        status = (kube.get(k8s.FLEETS, namespace, FLEET) or {}).get("status") or {}
        most_steps = max(most_steps, len(status.get("steps") or []))
        done = status.get("phase") == "Complete" and status.get("updated") == N
        return (done and not status.get("steps") and _all(kube, namespace, _ready)) or None

    wait_for(rolled, timeout=420, interval=2, what="the rollout complete")
    assert 0 < most_steps <= BUDGET, f"{most_steps} replacements at once, budget {BUDGET}"
