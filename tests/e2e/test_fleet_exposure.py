"""A fleet's entry Service follows `spec.exposure`: the nodes' public port only, the type
and traffic policy asked for, a new Service when the type changes; the schema refuses a
traffic policy on a ClusterIP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2e_helpers import OperatorProcess, wait_for
from marketplace_operator import errors, k8s
from marketplace_operator.render import names as names_
from rollout_helpers import make_fleet


def _entry(kube: k8s.BlockingKube, namespace: str) -> dict[str, Any] | None:
    return kube.get(k8s.SERVICES, namespace, "door-entry")


def test_the_entry_service_follows_the_fleets_exposure(
    kube: k8s.BlockingKube, namespace: str, operator: OperatorProcess
) -> None:
    names = make_fleet(kube, namespace, "door", 2)
    first = wait_for(lambda: _entry(kube, namespace), timeout=30, what="the entry Service")
    assert first["spec"]["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in first["spec"]["ports"]] == [(7070, "p2p")]

    # The local cluster runs no EndpointSlice controller: check what the Service selects.
    selected = kube.list(k8s.PODS, namespace, labels=first["spec"]["selector"])
    assert sorted(p["metadata"]["name"] for p in selected) == names
    for pod in selected:
        ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
        assert ports == {"p2p": 7070, "private": 9070}  # the Service forwards p2p only

    kube.patch(
        k8s.FLEETS,
        namespace,
        "door",
        {
            "spec": {
                "exposure": {
                    "type": "NodePort",
                    "externalTrafficPolicy": "Local",
                    "annotations": {"example.com/balancer": "edge"},
                }
            }
        },
    )

    def exposed() -> dict[str, Any] | None:
        svc = _entry(kube, namespace)
        return svc if svc and svc["spec"]["type"] == "NodePort" else None

    node_port = wait_for(exposed, timeout=60, what="the entry Service to become a NodePort")
    assert node_port["metadata"]["uid"] != first["metadata"]["uid"]  # a new Service
    assert node_port["spec"]["externalTrafficPolicy"] == "Local"
    assert node_port["metadata"]["annotations"]["example.com/balancer"] == "edge"
    assert node_port["spec"]["ports"][0]["nodePort"] > 0

    # Each member's outside address, as its node tells peers beyond the fleet: the node
    # port on its own Node (every local Node's address is 127.0.0.1).
    outside = f"http://127.0.0.1:{node_port['spec']['ports'][0]['nodePort']}"

    def announced() -> dict[str, str | None] | None:
        cm = kube.get(k8s.CONFIGMAPS, namespace, names_.policy_configmap_name("door"))
        listed = json.loads(((cm or {}).get("data") or {}).get(names_.MEMBERS_KEY) or "{}")
        got = {m["name"]: m.get("external") for m in listed.get("members", [])}
        return got if set(got.values()) == {outside} else None

    assert wait_for(announced, timeout=60, what="members.json with outside addresses") == {
        name: outside for name in names
    }

    with pytest.raises(errors.Invalid, match="externalTrafficPolicy needs type"):
        kube.patch(
            k8s.FLEETS,
            namespace,
            "door",
            {"spec": {"exposure": {"type": "ClusterIP", "externalTrafficPolicy": "Local"}}},
        )
