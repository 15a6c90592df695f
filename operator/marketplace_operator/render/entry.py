"""The fleet's entry Service: one address for clients and peers outside the fleet.

It selects every node of the fleet and forwards only their public port (`p2p`: peer
protocol and client API); the private port (admin API, metrics, probes) is never
exposed. `spec.exposure` chooses the type (ClusterIP, NodePort, LoadBalancer), its
annotations (a cloud's load-balancer settings) and `externalTrafficPolicy` (Local keeps
the client's address: docs/operations.md). Owned by the MarketplaceFleet, so it goes
with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marketplace_operator.model.fleet import ExposureSpec, ServiceType
from marketplace_operator.model.mnode import DEFAULT_PORT
from marketplace_operator.render import names


def entry_name(fleet: str) -> str:
    return f"{fleet}-entry"


def entry_service(
    fleet: str, *, namespace: str, exposure: ExposureSpec, owner_uid: str | None = None
) -> dict[str, Any]:
    metadata = names.fleet_metadata(
        entry_name(fleet), namespace=namespace, fleet=fleet, fleet_uid=owner_uid
    )
    metadata["annotations"] = dict(exposure.annotations)
    spec: dict[str, Any] = {
        "type": exposure.type.value,
        "selector": {"app.kubernetes.io/name": names.APP_NAME, names.FLEET_LABEL: fleet},
        "ports": [
            {
                "name": names.PORT_NAME,
                "port": DEFAULT_PORT,
                "targetPort": names.PORT_NAME,
                "protocol": "TCP",
            }
        ],
        "publishNotReadyAddresses": False,
    }
    if exposure.type != ServiceType.CLUSTER_IP and exposure.external_traffic_policy is not None:
        spec["externalTrafficPolicy"] = exposure.external_traffic_policy.value
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


def needs_recreate(observed: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """A change of type is made by a new Service: Kubernetes keeps the node ports and
    health-check port a NodePort or LoadBalancer allocated, which a ClusterIP refuses."""
    return bool((observed.get("spec") or {}).get("type") != wanted["spec"]["type"])


def patch(observed: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch bringing `observed` to `wanted` in what we manage (None: nothing
    to do). Annotations are added and updated, never removed: others (a cloud
    controller) write there too, and we cannot tell theirs from one a user dropped."""
    have_spec, want_spec = observed.get("spec") or {}, wanted["spec"]
    spec = {
        key: want_spec.get(key)
        for key in ("selector", "externalTrafficPolicy")
        if have_spec.get(key) != want_spec.get(key) and want_spec.get(key) is not None
    }
    if [
        {k: p.get(k) for k in ("name", "port", "targetPort")} for p in have_spec.get("ports", [])
    ] != [{k: p[k] for k in ("name", "port", "targetPort")} for p in want_spec["ports"]]:
        spec["ports"] = want_spec["ports"]
    have_notes = (observed.get("metadata") or {}).get("annotations") or {}
    want_notes = wanted["metadata"]["annotations"]
    notes: dict[str, str | None] = {k: v for k, v in want_notes.items() if have_notes.get(k) != v}
    out: dict[str, Any] = {}
    if spec:
        out["spec"] = spec
    if notes:
        out["metadata"] = {"annotations": notes}
    return out or None
