"""The PodDisruptionBudget of a fleet: voluntary evictions get the rollout's budget.

The rollout deletes pods itself (with its own budget); the PDB makes a `kubectl drain`
of a Kubernetes node, or a cluster autoscaler, respect the same `maxUnavailable`.

It says so with an integer `minAvailable` = members - budget, never `maxUnavailable`:
our pods' controller is a MarketplaceNode, which has no `/scale` subresource, so the
disruption controller cannot compute the expected pod count that `maxUnavailable` (or a
percentage) needs — it reports `CalculateExpectedPodCountFailed` and allows 0
disruptions, and every drain blocks forever. With an integer `minAvailable` it counts
the selected pods instead (Kubernetes docs, "Specifying a Disruption Budget for your
Application": arbitrary controllers). So the operator, which knows the fleet's members,
keeps `minAvailable` in step with them.

Unready pods may always be evicted (`AlwaysAllow`): they serve nobody, and a stuck pod
must never block a node drain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from marketplace_operator.render import names

LEGACY_FIELD = "maxUnavailable"  # what operators before minAvailable wrote; always removed


@dataclass(frozen=True)
class Budget:
    """What a fleet's PDB is computed from: re-ensure the PDB whenever this changes."""

    members: int
    max_unavailable: int

    @property
    def min_available(self) -> int:
        """Healthy pods to keep so that at most `max_unavailable` members are out."""
        return max(0, self.members - self.max_unavailable)


def members(mnodes: Iterable[Mapping[str, Any]]) -> int:
    """The fleet's members: its MarketplaceNodes not being deleted.

    A deleting node's finalizer drains it, which turns its pod unready, so it leaves the
    healthy count at the same time as it leaves this one (like a scale-down's replicas)."""
    return sum(1 for m in mnodes if not (m.get("metadata") or {}).get("deletionTimestamp"))


def pdb_name(fleet: str) -> str:
    return f"{fleet}-nodes"


def pdb(
    fleet: str, *, namespace: str, budget: Budget, owner_uid: str | None = None
) -> dict[str, Any]:
    """The fleet's PDB, owned by its MarketplaceFleet (when known) so it goes with it."""
    metadata = names.fleet_metadata(
        pdb_name(fleet), namespace=namespace, fleet=fleet, fleet_uid=owner_uid
    )
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata,
        "spec": {
            "minAvailable": budget.min_available,
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/name": names.APP_NAME,
                    names.FLEET_LABEL: fleet,
                }
            },
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def drifted(observed: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Does the observed PDB differ from `wanted` in what we manage (or still carry the
    legacy `maxUnavailable`, which keeps the disruption controller from counting)?"""
    spec = observed.get("spec") or {}
    legacy = spec.get(LEGACY_FIELD) is not None
    return legacy or any(spec.get(k) != v for k, v in wanted["spec"].items())


def spec_patch(wanted: Mapping[str, Any]) -> dict[str, Any]:
    """JSON merge patch turning any observed PDB into `wanted` (policy/v1 spec is mutable):
    the legacy `maxUnavailable` is removed, as only one of the two may be set."""
    return {"spec": {**wanted["spec"], LEGACY_FIELD: None}}
