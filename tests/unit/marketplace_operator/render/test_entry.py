"""The fleet's entry Service: only the public port, the type and traffic policy asked for,
and changes made by a patch, or by a new Service when the type changes."""

from __future__ import annotations

import pytest
from marketplace_operator.model.fleet import ExposureSpec, MarketplaceFleetSpec
from marketplace_operator.render import entry


def exposure(**fields: object) -> ExposureSpec:
    return MarketplaceFleetSpec.model_validate({"exposure": fields}).exposure


def test_the_default_is_a_cluster_ip_service_of_the_public_port_only() -> None:
    svc = entry.entry_service("blue", namespace="shop", exposure=exposure(), owner_uid="u1")
    assert svc["metadata"]["name"] == "blue-entry"
    assert svc["metadata"]["ownerReferences"][0]["kind"] == "MarketplaceFleet"
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP"
    assert "externalTrafficPolicy" not in spec
    assert spec["selector"] == {
        "app.kubernetes.io/name": "marketplace-node",
        "marketplace.p2p.dev/fleet": "blue",
    }
    assert [(p["name"], p["targetPort"]) for p in spec["ports"]] == [("p2p", "p2p")]


def test_a_load_balancer_keeps_client_addresses_with_local_traffic_policy() -> None:
    wanted = exposure(
        type="LoadBalancer",
        externalTrafficPolicy="Local",
        annotations={"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
    )
    svc = entry.entry_service("blue", namespace="shop", exposure=wanted)
    assert (svc["spec"]["type"], svc["spec"]["externalTrafficPolicy"]) == ("LoadBalancer", "Local")
    assert svc["metadata"]["annotations"] == {
        "service.beta.kubernetes.io/aws-load-balancer-type": "nlb"
    }


def test_a_type_change_is_a_new_service_other_changes_a_patch() -> None:
    node_port = entry.entry_service(
        "blue", namespace="shop", exposure=exposure(type="NodePort", externalTrafficPolicy="Local")
    )
    observed = {
        **node_port,
        "metadata": {**node_port["metadata"], "annotations": {"cloud.example/id": "x"}},
        "spec": {**node_port["spec"], "clusterIP": "10.96.0.9"},  # what the server adds
    }
    assert entry.patch(observed, node_port) is None
    cluster = entry.entry_service("blue", namespace="shop", exposure=exposure())
    assert entry.needs_recreate(observed, cluster)
    assert not entry.needs_recreate(observed, node_port)
    annotated = entry.entry_service(
        "blue",
        namespace="shop",
        exposure=exposure(type="NodePort", externalTrafficPolicy="Cluster", annotations={"a": "1"}),
    )
    assert entry.patch(observed, annotated) == {
        "spec": {"externalTrafficPolicy": "Cluster"},
        "metadata": {"annotations": {"a": "1"}},  # the cloud's own annotation stays
    }


@pytest.mark.parametrize("kind", ["NodePort", "LoadBalancer"])
def test_every_exposed_type_is_accepted(kind: str) -> None:
    assert exposure(type=kind).type.value == kind
