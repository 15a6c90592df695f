"""The PodDisruptionBudget of a fleet: voluntary evictions get the rollout's budget.

The rollout deletes pods itself (with its own budget); the PDB makes a `kubectl drain`
of a Kubernetes node, or a cluster autoscaler, respect the same `maxUnavailable`.
Unready pods may always be evicted (`AlwaysAllow`): they serve nobody, and a stuck pod
must never block a node drain.
"""

from __future__ import annotations

from typing import Any

from marketplace_operator.model.common import API_VERSION
from marketplace_operator.model.fleet import KIND
from marketplace_operator.render import names


def pdb_name(fleet: str) -> str:
    return f"{fleet}-nodes"


def pdb(
    fleet: str, *, namespace: str, max_unavailable: int, owner_uid: str | None = None
) -> dict[str, Any]:
    """The fleet's PDB, owned by its MarketplaceFleet (when known) so it goes with it."""
    metadata: dict[str, Any] = {
        "name": pdb_name(fleet),
        "namespace": namespace,
        "labels": names.fleet_labels(fleet),
    }
    if owner_uid is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": fleet,
                "uid": owner_uid,
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ]
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata,
        "spec": {
            "maxUnavailable": max_unavailable,
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/name": names.APP_NAME,
                    names.FLEET_LABEL: fleet,
                }
            },
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def drifted(observed: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Does the observed PDB differ from `wanted` in what we manage?"""
    spec = observed.get("spec") or {}
    return any(spec.get(k) != v for k, v in wanted["spec"].items())
