"""Names, labels and owner references of everything the operator creates (docs/contracts.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marketplace_operator.model.common import API_VERSION, LABEL_PREFIX
from marketplace_operator.model.fleet import KIND as FLEET_KIND
from marketplace_operator.model.mnode import KIND

FLEET_LABEL = f"{LABEL_PREFIX}fleet"
NODE_LABEL = "app.kubernetes.io/instance"
TEMPLATE_HASH_ANNOTATION = f"{LABEL_PREFIX}pod-template-hash"
PEER_ID_ANNOTATION = f"{LABEL_PREFIX}peer-id"
# The pod's private port (admin API, /metrics, probes); a pod without it has the one-port
# layout of node images before the split, whose admin API is on the p2p port.
PRIVATE_PORT_ANNOTATION = f"{LABEL_PREFIX}private-port"
JOINED_CONDITION = f"{LABEL_PREFIX}joined"
MANAGED_BY = "marketplace-operator"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED = {MANAGED_BY_LABEL: MANAGED_BY}
"""The label every object of ours carries; the operator's watches select on it."""
APP_NAME = "marketplace-node"

CONTAINER = "node"
PORT_NAME = "p2p"
PRIVATE_PORT_NAME = "private"
DATA_DIR = "/var/lib/marketplace"
IDENTITY_DIR = "/etc/marketplace/identity"
IDENTITY_KEY = "ed25519.pem"
ADMIN_DIR = "/etc/marketplace/admin"
ADMIN_TOKEN_KEY = "token"  # noqa: S105 - a key name, not a secret
POLICY_DIR = "/etc/marketplace/policy"
MEMBERS_KEY = "members.json"
TLS_DIR = "/etc/marketplace/tls"
TLS_SCHEME_ANNOTATION = f"{LABEL_PREFIX}scheme"
"""On a node's pod: `https` when its public listener serves TLS (members are told so)."""
TLS_CA_ANNOTATION = f"{LABEL_PREFIX}tls-ca"
"""On the fleet CA Secret and each certificate Secret the operator issues: the CA's key id."""
TLS_NOT_AFTER_ANNOTATION = f"{LABEL_PREFIX}tls-not-after"
TLS_NOT_BEFORE_ANNOTATION = f"{LABEL_PREFIX}tls-not-before"
TLS_NAMES_ANNOTATION = f"{LABEL_PREFIX}tls-names"
"""On a certificate Secret the operator issues: a digest of the names it carries."""


@dataclass(frozen=True)
class NodeRef:
    """Which MarketplaceNode the children belong to."""

    name: str
    namespace: str
    uid: str
    fleet: str


def pod_name(node: str) -> str:
    return node


def service_name(node: str) -> str:
    return node


def identity_secret_name(node: str) -> str:
    return f"{node}-identity"


def data_pvc_name(node: str) -> str:
    return f"{node}-data"


def admin_secret_name(fleet: str) -> str:
    return f"{fleet}-admin"


@dataclass(frozen=True)
class TlsMount:
    """What a node's pod needs for TLS: the certificate Secret to mount and the name every
    member's certificate carries (what peers verify)."""

    secret: str
    peer_name: str


def tls_ca_secret_name(fleet: str) -> str:
    """The fleet's CA (operator-made; also what the default cert-manager Issuer signs with)."""
    return f"{fleet}-tls-ca"


def node_tls_secret_name(node: str) -> str:
    """A node's certificate issued by the operator's CA."""
    return f"{node}-tls"


def fleet_tls_secret_name(fleet: str) -> str:
    """The fleet's certificate, written by cert-manager (also the Certificate's name)."""
    return f"{fleet}-fleet-tls"


def ca_issuer_name(fleet: str) -> str:
    """The cert-manager CA Issuer the operator makes when the fleet names no issuer."""
    return f"{fleet}-ca"


def fleet_tls_name(fleet: str, namespace: str) -> str:
    """The name every certificate of the fleet carries and peers verify."""
    return f"{fleet}.{namespace}.svc"


def policy_configmap_name(fleet: str) -> str:
    return f"{fleet}-policy"


POLICY_SHARDS = 3
"""Shard ConfigMaps a node's policy volume projects (render/policy.py fills them)."""


def policy_shard_configmap_name(fleet: str, index: int) -> str:
    """Shard `index` (1..POLICY_SHARDS) of a policy too large for the fleet ConfigMap."""
    return f"{fleet}-policy-{index}"


def fleet_labels(fleet: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP_NAME,
        MANAGED_BY_LABEL: MANAGED_BY,
        "app.kubernetes.io/part-of": "marketplace-fleet",
        FLEET_LABEL: fleet,
    }


def node_labels(ref: NodeRef) -> dict[str, str]:
    return {**fleet_labels(ref.fleet), NODE_LABEL: ref.name}


def node_selector(ref: NodeRef) -> dict[str, str]:
    """The labels that select exactly this node's pod (stable across operator versions)."""
    return {"app.kubernetes.io/name": APP_NAME, NODE_LABEL: ref.name}


def owner_reference_to(
    api_version: str,
    kind: str,
    name: str,
    uid: str,
    *,
    controller: bool = False,
    block_owner_deletion: bool = False,
) -> dict[str, Any]:
    """A reference that makes garbage collection delete the owned object with its owner."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": controller,
        "blockOwnerDeletion": block_owner_deletion,
    }


def owner_reference(ref: NodeRef) -> dict[str, Any]:
    """The MarketplaceNode as controller of one of its own children."""
    return owner_reference_to(
        API_VERSION, KIND, ref.name, ref.uid, controller=True, block_owner_deletion=True
    )


def fleet_owner_reference(fleet: str, uid: str) -> dict[str, Any]:
    """The MarketplaceFleet as controller of an object the whole fleet shares (admin
    Secret, policy ConfigMap, CA, PDB, entry Service): one reference however many members.
    One per member made each a write per starting node, N references long (issue 15)."""
    return owner_reference_to(API_VERSION, FLEET_KIND, fleet, uid, controller=True)


def fleet_metadata(
    name: str, *, namespace: str, fleet: str, fleet_uid: str | None, **annotations: str
) -> dict[str, Any]:
    """Metadata of a fleet-wide object, owned by the MarketplaceFleet once its uid is known
    (the fleet's loop adopts one made before: `reconcile.shared.owner_patch`)."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": fleet_labels(fleet)}
    if fleet_uid is not None:
        meta["ownerReferences"] = [fleet_owner_reference(fleet, fleet_uid)]
    if annotations:
        meta["annotations"] = annotations
    return meta


def metadata(
    name: str, ref: NodeRef, *, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ref.namespace,
        "labels": node_labels(ref),
        "ownerReferences": [owner_reference(ref)],
    }
    if annotations:
        meta["annotations"] = annotations
    return meta
