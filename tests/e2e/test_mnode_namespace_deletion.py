"""Deleting a watched namespace while the operator runs: our finalizers run and it goes.

kopf 1.45 with namespace scanning on stops serving a namespace on the first event of its
deletion, so the MarketplaceNodes' and the MarketplaceFleet's finalizers stayed and the
namespace was Terminating forever (`handlers.mnode.configure` explains the fix).

Drains are not asserted: in a Terminating namespace the API server refuses new Events,
and the namespace controller deletes the pods alongside the MarketplaceNodes, so the
finalizer mostly finds the pod already going (and skips the drain, as it should).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from e2e_helpers import Kubectl, OperatorProcess, mnode_body, wait_ready
from marketplace_operator import k8s
from marketplace_operator.model.common import LABEL_PREFIX

NAMESPACES = k8s.Resource("namespaces", namespaced=False)
FINALIZER = f"{LABEL_PREFIX.rstrip('/')}/finalizer"
DEADLINE_SECONDS = 90.0


def ours(kube: k8s.BlockingKube, namespace: str) -> dict[str, Any]:
    """Our objects left in the namespace: name → (deletionTimestamp, finalizers)."""
    return {
        f"{res.plural}/{obj['metadata']['name']}": (
            obj["metadata"].get("deletionTimestamp"),
            obj["metadata"].get("finalizers"),
        )
        for res in (k8s.MNODES, k8s.FLEETS)
        for obj in kube.list(res, namespace)
    }


def test_deleting_the_namespace_completes_while_the_operator_runs(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    names = ["n0", "n1", "n2"]
    for name in names:
        kube.create(k8s.MNODES, mnode_body(name, namespace, fleet="nsdel", drainTimeoutSeconds=5))
    wait_ready(kube, namespace, names, timeout=180)
    held = ours(kube, namespace)
    # What would hold the namespace if the operator stopped serving it.
    assert {f"marketplacenodes/{n}" for n in names} <= held.keys()
    assert "marketplacefleets/nsdel" in held
    assert all(FINALIZER in (finalizers or []) for _, finalizers in held.values()), held

    kubectl("delete", "namespace", namespace, "--wait=false")
    started = time.monotonic()
    while kube.get(NAMESPACES, "", namespace) is not None:
        if time.monotonic() - started > DEADLINE_SECONDS:
            pytest.fail(
                f"namespace {namespace} still there {DEADLINE_SECONDS}s after its deletion; "
                f"held by {ours(kube, namespace)}\noperator log tail:\n{operator.logs()[-2000:]}"
            )
        time.sleep(1)
    took = time.monotonic() - started

    # Nobody else removes our finalizers while the test runs: the running operator did.
    assert operator.proc is not None
    assert operator.proc.poll() is None, "the operator died"
    print(f"namespace {namespace} gone {took:.1f}s after its deletion")
    assert kube.list(k8s.MNODES, namespace) == []
    assert kube.list(k8s.FLEETS, namespace) == []
