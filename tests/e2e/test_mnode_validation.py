"""The API server itself refuses bad MarketplaceNodes, with messages a user understands."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from e2e_helpers import Kubectl, mnode_body
from marketplace_operator import errors, k8s

BAD_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("port-too-low", {"p2p": {"port": 80}}, "greater than or equal to 1024"),
    ("port-not-int", {"p2p": {"port": "seventy"}}, "must be of type integer"),
    ("max-peers-zero", {"p2p": {"maxPeers": 0}}, "greater than or equal to 1"),
    ("drain-too-long", {"drainTimeoutSeconds": 7200}, "less than or equal to 3600"),
    ("fleet-not-dns", {"fleet": "Blue_Fleet"}, "spec.fleet"),
    ("paused-not-bool", {"paused": "yes"}, "must be of type boolean"),
    ("unknown-field", {"replicas": 3}, 'unknown field "spec.replicas"'),
    ("bad-quantity", {"storage": {"size": "lots"}}, "spec.storage.size"),
    ("bad-peer-url", {"p2p": {"bootstrapPeers": ["ftp://x"]}}, "bootstrapPeers[0]"),
    (
        "limit-below-request",
        {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}},
        "every limit must be at least its request",
    ),
]


@pytest.mark.parametrize(("name", "spec", "message"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_kubectl_apply_refuses_invalid_objects(
    kubectl: Kubectl, namespace: str, name: str, spec: dict[str, Any], message: str
) -> None:
    result = kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump(mnode_body(name, namespace, **spec)),
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert kubectl("get", "mnode", name, "-n", namespace, check=False).returncode != 0


@pytest.mark.parametrize(("name", "spec", "message"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_api_create_refuses_invalid_objects(
    kube: k8s.Kube, namespace: str, name: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(errors.Invalid) as refused:
        kube.create(k8s.MNODES, mnode_body(name, namespace, **spec))
    assert refused.value.status in {400, 422}
    assert message in refused.value.message


def test_name_must_be_a_dns_label(kube: k8s.Kube, namespace: str) -> None:
    with pytest.raises(errors.Invalid) as refused:
        kube.create(k8s.MNODES, mnode_body("node.with.dots", namespace))
    assert "DNS-1035 label" in refused.value.message


def test_defaults_are_filled_in_by_the_api_server(kube: k8s.Kube, namespace: str) -> None:
    created = kube.create(k8s.MNODES, mnode_body("defaults", namespace))
    assert created is not None
    assert created["spec"] == {
        "image": "",
        "fleet": "default",
        "p2p": {"port": 7070, "maxPeers": 50},
        "storage": {"size": "1Gi"},
        "resources": {},
        "drainTimeoutSeconds": 30,
        "paused": False,
    }


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"spec": {"fleet": "other"}}, "fleet is immutable"),
        ({"spec": {"storage": {"size": "512Mi"}}}, "may grow but never shrink"),
    ],
)
def test_transition_rules(
    kube: k8s.Kube, namespace: str, patch: dict[str, Any], message: str
) -> None:
    kube.create(k8s.MNODES, mnode_body("moving", namespace, fleet="one", storage={"size": "1Gi"}))
    with pytest.raises(errors.Invalid) as refused:
        kube.patch(k8s.MNODES, namespace, "moving", patch)
    assert message in refused.value.message
    grown = kube.patch(k8s.MNODES, namespace, "moving", {"spec": {"storage": {"size": "2Gi"}}})
    assert grown["spec"]["storage"]["size"] == "2Gi"


def test_kubectl_explain_documents_the_fields(kubectl: Kubectl, crds: list[str]) -> None:
    out = kubectl("explain", "marketplacenode.spec.p2p.maxPeers").stdout
    assert "Cap of the node's peer table" in out
    status = kubectl("explain", "mnode.status.conditions").stdout
    assert "Ready, Progressing, PolicyApplied and Degraded" in status
