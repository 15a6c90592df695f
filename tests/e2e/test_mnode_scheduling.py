"""Scheduling on the multi-node local cluster: a fleet spreads over the Nodes by default,
and a hard anti-affinity that too few Nodes can satisfy is reported, not waited on."""

from __future__ import annotations

from collections import Counter
from typing import Any

from e2e_helpers import (
    OperatorProcess,
    condition,
    local_nodes,
    mnode_body,
    placement,
    wait_for,
)
from marketplace_operator import k8s
from rollout_helpers import events


def test_a_fleet_spreads_evenly_over_the_nodes_by_default(
    kube: k8s.BlockingKube, namespace: str, operator: OperatorProcess
) -> None:
    nodes = local_nodes(kube)
    assert len(nodes) >= 2, nodes
    names = [f"spread-{i}" for i in range(2 * len(nodes))]
    for name in names:
        kube.create(k8s.MNODES, mnode_body(name, namespace, fleet="spread"))

    def all_placed() -> dict[str, str] | None:
        placed = placement(kube, namespace, names)
        return placed if len(placed) == len(names) else None

    placed = wait_for(all_placed, timeout=120, what="every pod scheduled")
    assert Counter(placed.values()) == dict.fromkeys(nodes, 2), placed


def test_a_hard_anti_affinity_with_too_few_nodes_is_reported(
    kube: k8s.BlockingKube, namespace: str, operator: OperatorProcess
) -> None:
    only = local_nodes(kube)[-1]
    scheduling: dict[str, Any] = {
        "nodeSelector": {"kubernetes.io/hostname": only},  # one Node for two nodes
        "affinity": {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "kubernetes.io/hostname"}  # no selector: its fleet
                ]
            }
        },
    }
    names = ["apart-a", "apart-b"]
    for name in names:
        kube.create(k8s.MNODES, mnode_body(name, namespace, fleet="apart", scheduling=scheduling))

    def reported() -> tuple[str, dict[str, Any]] | None:
        for name in names:
            degraded = condition(kube.get(k8s.MNODES, namespace, name), "Degraded")
            if degraded and degraded["status"] == "True" and degraded["reason"] == "Unschedulable":
                return name, degraded
        return None

    stuck, degraded = wait_for(reported, timeout=90, what="a node reported Unschedulable")
    assert "anti-affinity" in degraded["message"], degraded
    (other,) = set(names) - {stuck}
    # (Its volume binds first: it may be bound to the Node a moment later.)
    wait_for(
        lambda: placement(kube, namespace, [other]) == {other: only},
        timeout=60,
        what=f"{other} on {only}",
    )
    warned = wait_for(
        lambda: [
            e
            for e in events(kube, namespace, "MarketplaceNode", stuck)
            if e["type"] == "Warning" and "cannot place" in e.get("message", "")
        ],
        timeout=30,
        what="a Warning Event on the unschedulable node",
    )
    assert warned
