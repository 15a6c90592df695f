"""The API server itself refuses bad MarketplaceNodes, with messages a user understands."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from e2e_helpers import Kubectl, custom_body, mnode_body
from marketplace_operator import errors, k8s
from marketplace_operator.model.fleet import MAX_UNAVAILABLE_MESSAGE

BAD_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("port-too-low", {"p2p": {"port": 80}}, "greater than or equal to 1024"),
    ("port-not-int", {"p2p": {"port": "seventy"}}, "must be of type integer"),
    ("max-peers-zero", {"p2p": {"maxPeers": 0}}, "greater than or equal to 1"),
    ("drain-too-long", {"drainTimeoutSeconds": 7200}, "less than or equal to 3600"),
    ("fleet-not-dns", {"fleet": "Blue_Fleet"}, "spec.fleet"),
    ("paused-not-bool", {"paused": "yes"}, "must be of type boolean"),
    ("unknown-field", {"replicas": 3}, 'unknown field "spec.replicas"'),
    ("bad-quantity", {"storage": {"size": "lots"}}, "spec.storage.size"),
    ("negative-size", {"storage": {"size": "-1Gi"}}, "storage.size must be greater than 0"),
    ("negative-int-size", {"storage": {"size": -1}}, "storage.size must be greater than 0"),
    ("zero-size", {"storage": {"size": "0"}}, "storage.size must be greater than 0"),
    ("negative-cpu", {"resources": {"requests": {"cpu": "-100m"}}}, "must not be negative"),
    ("negative-int-limit", {"resources": {"limits": {"memory": -1}}}, "must not be negative"),
    ("fleet-too-long", {"fleet": "f" * 51}, "may not be more than 50"),
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
    kube: k8s.BlockingKube, namespace: str, name: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(errors.Invalid) as refused:
        kube.create(k8s.MNODES, mnode_body(name, namespace, **spec))
    assert refused.value.status in {400, 422}
    assert message in refused.value.message


def test_name_must_be_a_dns_label(kube: k8s.BlockingKube, namespace: str) -> None:
    with pytest.raises(errors.Invalid) as refused:
        kube.create(k8s.MNODES, mnode_body("node.with.dots", namespace))
    assert "DNS-1035 label" in refused.value.message


def test_defaults_are_filled_in_by_the_api_server(kube: k8s.BlockingKube, namespace: str) -> None:
    created = kube.create(k8s.MNODES, mnode_body("defaults", namespace))
    assert created is not None
    assert created["spec"] == {
        "image": "",
        "fleet": "default",
        "p2p": {"port": 7070, "privatePort": 9070, "maxPeers": 50},
        "storage": {"size": "1Gi"},
        "resources": {},
        "drainTimeoutSeconds": 30,
        "paused": False,
        "relocation": {"whenNodeUnavailable": "Relocate", "nodeLostGraceSeconds": 60},
    }


def _fleet(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return custom_body("MarketplaceFleet", name, namespace, **spec)


# Each at most 4 characters: a longer string is refused by the schema's maxLength first
# ("Too long"), before the rule and its message.
BAD_MAX_UNAVAILABLE = ["abc", "0%", "150%", "10", "1.5%", 0, -1]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"replication": {"factor": 2, "minInSync": 3}}, "minInSync must not exceed factor"),
        # the default factor is 3
        ({"replication": {"minInSync": 4}}, "minInSync must not exceed factor"),
        ({"replication": {"factor": 1, "minInSync": 2}}, "minInSync must not exceed factor"),
        ({"replication": {"factor": 0}}, "greater than or equal to 1"),
        ({"replication": {"minInSync": 0}}, "greater than or equal to 1"),
        ({"replication": {"factor": 65, "minInSync": 2}}, "less than or equal to 64"),
        *(({"maxUnavailable": v}, MAX_UNAVAILABLE_MESSAGE) for v in BAD_MAX_UNAVAILABLE),
    ],
    ids=[
        "above", "above-default", "above-one", "factor-zero", "in-sync-zero", "factor-big",
        *(f"max-unavailable-{v!r}" for v in BAD_MAX_UNAVAILABLE),
    ],
)  # fmt: skip
def test_bad_fleet_specs_are_refused(
    kube: k8s.BlockingKube, namespace: str, spec: dict[str, Any], message: str
) -> None:
    """Replication outside 1 <= minInSync <= factor; maxUnavailable neither a count nor a
    percentage (the CRD's CEL rule)."""
    with pytest.raises(errors.Invalid) as refused:
        kube.create(k8s.FLEETS, _fleet("bad", namespace, **spec))
    assert message in refused.value.message


def test_fleet_replication_defaults_to_three_copies_two_in_sync(
    kube: k8s.BlockingKube, namespace: str
) -> None:
    created = kube.create(k8s.FLEETS, _fleet("defaults", namespace))
    assert created is not None
    assert created["spec"]["replication"] == {"factor": 3}  # minInSync: 2, or factor if less
    one = kube.create(k8s.FLEETS, _fleet("one", namespace, replication={"factor": 1}))
    assert one is not None  # a single copy needs no explicit minInSync


def test_fleet_max_unavailable_takes_percentages_and_counts_beyond_64(
    kube: k8s.BlockingKube, namespace: str
) -> None:
    for name, value in (("tenth", "10%"), ("all", "100%"), ("thousand", 1000)):
        created = kube.create(k8s.FLEETS, _fleet(name, namespace, maxUnavailable=value))
        assert created is not None
        assert created["spec"]["maxUnavailable"] == value


CLASS_IMMUTABLE = "storageClassName is immutable"


@pytest.mark.parametrize(
    ("storage", "patch", "message"),
    [
        ({"size": "1Gi"}, {"spec": {"fleet": "other"}}, "fleet is immutable"),
        ({"size": "1Gi"}, {"spec": {"storage": {"size": "512Mi"}}}, "may grow but never shrink"),
        ({"size": "1Gi"}, {"spec": {"storage": {"storageClassName": "std"}}}, CLASS_IMMUTABLE),
        ({"storageClassName": "std"}, {"spec": {"storage": {"storageClassName": None}}},
         CLASS_IMMUTABLE),
        ({"storageClassName": "std"}, {"spec": {"storage": {"storageClassName": "other"}}},
         CLASS_IMMUTABLE),
    ],
    ids=["fleet", "shrink", "class-added", "class-removed", "class-changed"],
)  # fmt: skip
def test_transition_rules(
    kube: k8s.BlockingKube,
    namespace: str,
    storage: dict[str, Any],
    patch: dict[str, Any],
    message: str,
) -> None:
    kube.create(k8s.MNODES, mnode_body("moving", namespace, fleet="one", storage=storage))
    with pytest.raises(errors.Invalid) as refused:
        kube.patch(k8s.MNODES, namespace, "moving", patch)
    assert message in refused.value.message
    grown = kube.patch(
        k8s.MNODES, namespace, "moving", {"spec": {"storage": {"size": "2Gi"}}}, answer=True
    )
    assert grown["spec"]["storage"]["size"] == "2Gi"


def test_one_fleets_nodes_can_be_selected(kubectl: Kubectl, namespace: str) -> None:
    for name, fleet in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        body = mnode_body(name, namespace, fleet=fleet, paused=True)
        kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
    out = kubectl("get", "mnode", "-n", namespace, "--field-selector", "spec.fleet=a", "-o", "name")
    assert out.stdout.split() == ["marketplacenode.marketplace.p2p.dev/a1",
                                  "marketplacenode.marketplace.p2p.dev/a2"]  # fmt: skip


def test_kubectl_explain_documents_the_fields(kubectl: Kubectl, crds: list[str]) -> None:
    out = kubectl("explain", "marketplacenode.spec.p2p.maxPeers").stdout
    assert "Cap of the node's peer table" in out
    assert "maximum 1000" in out
    status = kubectl("explain", "mnode.status.conditions").stdout
    assert "Ready, Progressing, PolicyApplied and Degraded" in status
    fleet = " ".join(kubectl("explain", "mnode.spec.fleet").stdout.split())  # unwrapped
    assert "max length 50" in fleet
