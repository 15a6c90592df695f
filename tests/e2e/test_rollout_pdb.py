"""The fleet's PodDisruptionBudget works with Kubernetes' disruption controller.

MarketplaceNode has no `/scale` subresource, so the PDB must use an integer
`minAvailable` (a `maxUnavailable` PDB gets `CalculateExpectedPodCountFailed` and 0
allowed disruptions: every drain blocks). Proven on the real controller: its status
allows exactly the budget, the Eviction API lets one healthy pod go and refuses the
next, membership changes move `minAvailable`, and a legacy `maxUnavailable` PDB (seen
failing as above) is migrated by a restarted operator.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_helpers import OperatorProcess, mnode_body, wait_for, wait_ready
from marketplace_operator import errors, k8s
from rollout_helpers import DRAIN_SECONDS, events, make_fleet, pod_uids

FLEET = "guard"
PDB = f"{FLEET}-nodes"
BUDGET = 1
FAILED = "CalculateExpectedPodCountFailed"


def _pdb_allows(kube: k8s.BlockingKube, namespace: str, members: int) -> dict[str, Any] | None:
    """The PDB once the disruption controller has counted `members` healthy pods of which
    the budget may go; None until then."""
    obj = kube.get(k8s.PDBS, namespace, PDB)
    if obj is None:
        return None
    spec, status = obj["spec"], obj.get("status") or {}
    settled = (
        spec.get("minAvailable") == members - BUDGET
        and "maxUnavailable" not in spec
        and status.get("observedGeneration") == obj["metadata"]["generation"]
        and status.get("expectedPods") == members
        and status.get("currentHealthy") == members
        and status.get("disruptionsAllowed") == BUDGET
    )
    return obj if settled else None


def _wait_pdb(kube: k8s.BlockingKube, namespace: str, members: int, what: str) -> dict[str, Any]:
    return wait_for(
        lambda: _pdb_allows(kube, namespace, members), timeout=60, interval=0.5, what=what
    )


def _evict(kube: k8s.BlockingKube, namespace: str, pod: str) -> None:
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": namespace},
    }
    kube.request("POST", k8s.PODS.path(namespace, pod, "eviction"), body=body)


def _failures(kube: k8s.BlockingKube, namespace: str) -> list[str]:
    return [
        e.get("message", "")
        for e in events(kube, namespace, "PodDisruptionBudget", PDB)
        if e.get("reason") == FAILED
    ]


@pytest.mark.timeout(600)
def test_pdb_lets_the_budget_be_evicted_and_follows_members(
    kube: k8s.BlockingKube, namespace: str, operator: OperatorProcess
) -> None:
    names = make_fleet(kube, namespace, FLEET, 3, max_unavailable=BUDGET)
    _wait_pdb(kube, namespace, 3, "the PDB to allow the budget of 3 healthy pods")
    assert _failures(kube, namespace) == []

    # A `kubectl drain`, one eviction at a time: the budget goes, the next is refused.
    before = pod_uids(kube, namespace, names)
    _evict(kube, namespace, names[0])
    with pytest.raises(errors.KubeError) as refused:
        _evict(kube, namespace, names[1])
    assert refused.value.status == 429, refused.value.message
    assert "disruption budget" in refused.value.message

    # The node reconcile brings the evicted node back; the budget is whole again.
    wait_for(
        lambda: (
            (kube.get(k8s.PODS, namespace, names[0]) or {}).get("metadata", {}).get("uid")
            not in {None, before[names[0]]}
        ),
        timeout=30 + DRAIN_SECONDS,
        interval=0.5,
        what="the evicted node's new pod",
    )
    wait_ready(kube, namespace, names, timeout=120)
    _wait_pdb(kube, namespace, 3, "the PDB to allow the budget again")
    assert pod_uids(kube, namespace, names[1:]) == {n: before[n] for n in names[1:]}

    # A new member moves minAvailable with it.
    kube.create(
        k8s.MNODES,
        mnode_body(f"{FLEET}-3", namespace, fleet=FLEET, drainTimeoutSeconds=DRAIN_SECONDS),
    )
    wait_ready(kube, namespace, [f"{FLEET}-3"], timeout=120)
    _wait_pdb(kube, namespace, 4, "the PDB to follow the fourth member")

    # A PDB as an older operator wrote it is migrated when the new one starts.
    legacy = {"spec": {"minAvailable": None, "maxUnavailable": BUDGET}}
    kube.patch(k8s.PDBS, namespace, PDB, legacy)

    def stuck() -> bool:  # the bug itself, on the real controller: nothing may be evicted
        status = (kube.get(k8s.PDBS, namespace, PDB) or {}).get("status") or {}
        return bool(_failures(kube, namespace)) and status.get("disruptionsAllowed") == 0

    wait_for(stuck, timeout=60, interval=0.5, what=f"{FAILED} on the legacy PDB")
    operator.restart()
    _wait_pdb(kube, namespace, 4, "the restarted operator to migrate the legacy PDB")

    # A member that leaves takes its share of minAvailable with it.
    kube.delete(k8s.MNODES, namespace, f"{FLEET}-3")
    wait_for(
        lambda: kube.get(k8s.MNODES, namespace, f"{FLEET}-3") is None,
        timeout=60,
        interval=0.5,
        what="the fourth member to be gone",
    )
    _wait_pdb(kube, namespace, 3, "the PDB to follow the fourth member out")
