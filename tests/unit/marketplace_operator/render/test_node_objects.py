"""The pure builders: names, ownership, the pod's contract with the node, the template hash."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from marketplace_operator.model.mnode import MarketplaceNodeSpec
from marketplace_operator.render import configmap, names, pod, pvc, secrets, service
from marketplace_protocol.admin import Member, Members

REF = names.NodeRef(name="n1", namespace="ns", uid="uid-1", fleet="blue")
IMAGE = "ghcr.io/marketplace-fleet/node:0.1.0"


def spec(**fields: Any) -> MarketplaceNodeSpec:
    return MarketplaceNodeSpec.model_validate({"fleet": "blue", **fields})


def _env(p: dict[str, Any]) -> dict[str, Any]:
    return {
        e["name"]: e.get("value", e.get("valueFrom")) for e in p["spec"]["containers"][0]["env"]
    }


def test_pod_runs_the_image_entrypoint_with_the_contract_env() -> None:
    s = spec(p2p={"port": 7444, "maxPeers": 9, "bootstrapPeers": ["http://127.1.0.9:7070"]})
    p = pod.pod(REF, pod.PodInputs(IMAGE, s))
    container = p["spec"]["containers"][0]
    assert "command" not in container
    assert "args" not in container
    assert container["image"] == IMAGE
    env = _env(p)
    assert env["MARKETPLACE_NODE_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["MARKETPLACE_NODE_PORT"] == "7444"
    assert env["MARKETPLACE_NODE_MAX_PEERS"] == "9"
    assert env["MARKETPLACE_NODE_FLEET"] == "blue"
    assert env["MARKETPLACE_NODE_BOOTSTRAP_PEERS"] == "http://127.1.0.9:7070"
    assert env["MARKETPLACE_NODE_IDENTITY_FILE"] == "/etc/marketplace/identity/ed25519.pem"
    assert env["MARKETPLACE_NODE_ADMIN_TOKEN_FILE"] == "/etc/marketplace/admin/token"
    assert env["MARKETPLACE_NODE_POLICY_DIR"] == "/etc/marketplace/policy"
    assert env["MARKETPLACE_NODE_PRIVATE_PORT"] == "9070"
    # probes on the private listener; the p2p port first (peers' addresses use it)
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "private"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "private"}
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("p2p", 7444),
        ("private", 9070),
    ]
    assert p["metadata"]["annotations"]["marketplace.p2p.dev/private-port"] == "9070"


def test_the_private_port_shapes_the_pod_only_when_changed() -> None:
    """Pods made before the field keep their hash (no restart on operator upgrade); a
    user's change of it is a change of the pod."""
    default = pod.template_hash(pod.PodInputs(IMAGE, spec()))
    assert pod.template_hash(pod.PodInputs(IMAGE, spec(p2p={"privatePort": 9070}))) == default
    moved = pod.PodInputs(IMAGE, spec(p2p={"privatePort": 9555}))
    assert pod.template_hash(moved) != default
    assert _env(pod.pod(REF, moved))["MARKETPLACE_NODE_PRIVATE_PORT"] == "9555"


def test_bootstrap_env_absent_when_the_fleet_provides_peers() -> None:
    assert "MARKETPLACE_NODE_BOOTSTRAP_PEERS" not in _env(
        pod.pod(REF, pod.PodInputs(IMAGE, spec()))
    )


def test_pod_is_restricted_gated_owned_and_mounts_the_policy_as_a_directory() -> None:
    p = pod.pod(REF, pod.PodInputs(IMAGE, spec(drainTimeoutSeconds=45)))
    sc = p["spec"]["containers"][0]["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert p["spec"]["readinessGates"] == [{"conditionType": "marketplace.p2p.dev/joined"}]
    assert p["spec"]["terminationGracePeriodSeconds"] > 45
    assert p["spec"]["automountServiceAccountToken"] is False
    mounts = {m["name"]: m for m in p["spec"]["containers"][0]["volumeMounts"]}
    assert "subPath" not in mounts["policy"]
    volumes = {v["name"]: v for v in p["spec"]["volumes"]}
    assert volumes["policy"]["projected"]["sources"][0]["configMap"] == {"name": "blue-policy"}
    assert volumes["admin"]["secret"]["secretName"] == "blue-admin"
    assert volumes["identity"]["secret"]["secretName"] == "n1-identity"
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "n1-data"
    (owner,) = p["metadata"]["ownerReferences"]
    assert owner["uid"] == REF.uid
    assert owner["controller"] is True
    assert p["metadata"]["labels"]["marketplace.p2p.dev/fleet"] == "blue"
    assert p["metadata"]["labels"]["app.kubernetes.io/instance"] == "n1"


def test_resources_are_passed_through_only_when_set() -> None:
    plain = pod.pod(REF, pod.PodInputs(IMAGE, spec()))
    assert "resources" not in plain["spec"]["containers"][0]
    res = {"requests": {"cpu": "100m"}, "limits": {"cpu": 1}}
    sized = pod.pod(REF, pod.PodInputs(IMAGE, spec(resources=res)))
    assert sized["spec"]["containers"][0]["resources"] == res


@pytest.mark.parametrize(
    ("change", "restarts"),
    [
        ({"image": "x/marketplace-fleet/node:0.2.0"}, True),
        ({"spec": {"p2p": {"port": 7071}}}, True),
        ({"spec": {"p2p": {"maxPeers": 7}}}, True),
        ({"spec": {"resources": {"limits": {"memory": "1Gi"}}}}, True),
        ({"spec": {"drainTimeoutSeconds": 31}}, True),
        ({"restart_token": "2026-01-01T00:00:00Z"}, True),
        ({"spec": {"paused": True}}, False),
        ({"spec": {"storage": {"size": "5Gi"}}}, False),
    ],
)
def test_template_hash_changes_exactly_with_inputs_that_shape_the_pod(
    change: dict[str, Any], restarts: bool
) -> None:
    base = pod.PodInputs(IMAGE, spec())
    changed = pod.PodInputs(
        change.get("image", IMAGE),
        spec(**change.get("spec", {})),
        restart_token=change.get("restart_token", ""),
    )
    assert (pod.template_hash(base) != pod.template_hash(changed)) is restarts


def test_template_hash_is_recorded_on_the_pod() -> None:
    inputs = pod.PodInputs(IMAGE, spec())
    p = pod.pod(REF, inputs)
    assert p["metadata"]["annotations"][names.TEMPLATE_HASH_ANNOTATION] == pod.template_hash(inputs)


def test_identity_secret_is_immutable_and_carries_the_peer_id() -> None:
    s = secrets.identity_secret(REF, private_key_pem=b"PEM", peer_id="mpabc")
    assert s["immutable"] is True
    assert base64.b64decode(s["data"]["ed25519.pem"]) == b"PEM"
    assert s["metadata"]["annotations"][names.PEER_ID_ANNOTATION] == "mpabc"
    assert s["metadata"]["name"] == "n1-identity"


def test_fleet_objects_are_owned_by_the_marketplacefleet_not_a_node() -> None:
    admin = secrets.admin_secret(REF, token="t0k", fleet_uid="fleet-uid")
    cm = configmap.policy_configmap(REF, members="{}", fleet_uid="fleet-uid")
    for obj, name in ((admin, "blue-admin"), (cm, "blue-policy")):
        assert obj["metadata"]["name"] == name
        assert obj["metadata"]["labels"] == names.fleet_labels("blue")
        (owner,) = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "MarketplaceFleet",
            "blue",
            "fleet-uid",
        )
        assert owner["controller"] is True
        assert owner["blockOwnerDeletion"] is False
    assert base64.b64decode(admin["data"]["token"]) == b"t0k"


def test_fleet_objects_made_before_their_marketplacefleet_have_no_owner() -> None:
    # The fleet's loop adopts them once the MarketplaceFleet exists (reconcile.shared).
    admin = secrets.admin_secret(REF, token="t0k", fleet_uid=None)
    cm = configmap.policy_configmap(REF, members="{}", fleet_uid=None)
    assert "ownerReferences" not in admin["metadata"]
    assert "ownerReferences" not in cm["metadata"]


def test_members_json_is_canonical() -> None:
    a = Member(address="http://127.1.0.2:7070", name="b")
    b = Member(address="http://127.1.0.1:7070", name="a", peer_id="mpaaaaaaaaaa")
    one = configmap.members_json([a, b])
    assert one == configmap.members_json([b, a])
    assert [m.name for m in Members.model_validate_json(one).members] == ["a", "b"]


def test_pvc_and_service() -> None:
    claim = pvc.data_pvc(REF, spec(storage={"size": "3Gi", "storageClassName": "fast"}))
    assert claim["spec"]["resources"]["requests"]["storage"] == "3Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    assert "storageClassName" not in pvc.data_pvc(REF, spec())["spec"]
    svc = service.service(REF, spec(p2p={"port": 7555}))
    assert svc["spec"]["ports"][0]["port"] == 7555
    assert svc["spec"]["selector"] == {
        "app.kubernetes.io/name": "marketplace-node",
        "app.kubernetes.io/instance": "n1",
    }
