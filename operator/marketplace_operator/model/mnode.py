"""The MarketplaceNode custom resource: one node of a fleet = one pod and its children."""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from marketplace_operator.model.common import (
    FLEET_NAME_MAX,
    FLEET_NAME_PATTERN,
    POSITIVE_QUANTITY,
    CamelModel,
    Condition,
    CrdInfo,
    PrinterColumn,
    Quantity,
    cel,
    conditions_field,
    validations,
)
from marketplace_operator.model.scheduling import SchedulingSpec, TemplateSpec

KIND = "MarketplaceNode"
PLURAL = "marketplacenodes"
DEFAULT_FLEET = "default"
DEFAULT_PORT = 7070
DEFAULT_PRIVATE_PORT = 9070
MAX_CONNECTED_PEERS_LISTED = 32

PeerUrl = Annotated[
    str,
    Field(max_length=256, pattern=r"^https?://[^\s/?#]+(:[0-9]{1,5})?/?$"),
]

_QTY_CMP = "quantity(string({a})).compareTo(quantity(string({b})))"


class P2PSpec(CamelModel):
    """Settings of the peer-to-peer protocol."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.privatePort) || self.port != self.privatePort",
                "p2p.port and p2p.privatePort must differ",
                reason="FieldValueInvalid",
            )
        )
    )

    port: int = Field(
        default=DEFAULT_PORT,
        ge=1024,
        le=65535,
        description="Port of the public listener: the peer protocol and the client API.",
    )
    private_port: int = Field(
        default=DEFAULT_PRIVATE_PORT,
        ge=1024,
        le=65535,
        description=(
            "Port of the private listener: the admin API, /metrics and probes (only the "
            "operator, Prometheus and the kubelet reach it)."
        ),
    )
    max_peers: int = Field(default=50, ge=1, le=1000, description="Cap of the node's peer table.")
    bootstrap_peers: list[PeerUrl] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "Base URLs (http://IP:PORT) the node contacts first. Empty: the other members "
            "of its fleet, as the operator tells the node."
        ),
    )


# On the parent object, so that adding or removing the class is caught too: a rule on the
# field itself runs only when the old and the new object both have it.
_CLASS_UNCHANGED = (
    "has(self.storageClassName) == has(oldSelf.storageClassName) && "
    "(!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)"
)


class StorageSpec(CamelModel):
    """The node's data volume (SQLite store and content blobs)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                _CLASS_UNCHANGED,
                "storage.storageClassName is immutable (it cannot be added, changed or removed)",
                reason="FieldValueForbidden",
            )
        )
    )

    size: Quantity = Field(
        default="1Gi",
        description="Requested size of the data PersistentVolumeClaim; it may grow, never shrink.",
        json_schema_extra=validations(
            cel(POSITIVE_QUANTITY, "storage.size must be greater than 0"),
            cel(
                f"{_QTY_CMP.format(a='self', b='oldSelf')} >= 0",
                "storage.size may grow but never shrink",
                reason="FieldValueForbidden",
            ),
        ),
    )
    storage_class_name: str | None = Field(
        default=None,
        max_length=253,
        description=(
            "StorageClass of the data PersistentVolumeClaim; empty: the cluster default. "
            "Immutable: it cannot be added, changed or removed after creation."
        ),
    )


_LIMITS_COVER_REQUESTS = (
    "!has(self.requests) || !has(self.limits) || self.limits.all(k, !(k in self.requests) || "
    + _QTY_CMP.format(a="self.limits[k]", b="self.requests[k]")
    + " >= 0)"
)


class ResourceRequirements(CamelModel):
    """Compute resources of the node container, as in a Pod's container."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(_LIMITS_COVER_REQUESTS, "every limit must be at least its request")
        )
    )

    requests: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=8,
        description="Minimum resources, e.g. {cpu: 100m, memory: 128Mi}.",
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=8,
        description="Maximum resources; each must be at least the matching request.",
    )


class RelocationSpec(CamelModel):
    """What happens to the node when its Kubernetes Node is drained, cordoned or lost
    (docs/operations.md, "Draining and losing a Node")."""

    when_node_unavailable: Literal["Relocate", "WaitForNode"] = Field(
        default="Relocate",
        description=(
            "Relocate: a pod on a lost Node is deleted after nodeLostGraceSeconds, and a "
            "node whose data volume sits on a cordoned or lost Node gets a new, empty "
            "volume on another Node and re-syncs from its peers. WaitForNode: keep the "
            "volume and wait for the Node to come back (as CloudNativePG's reusePVC)."
        ),
    )
    node_lost_grace_seconds: int = Field(
        default=60,
        ge=0,
        le=86_400,
        description=(
            "How long the Node may be NotReady (after the node lifecycle controller says "
            "so) before the node counts as lost."
        ),
    )


class MarketplaceNodeSpec(CamelModel):
    """Desired state of one marketplace node. The operator never writes it (GitOps-safe)."""

    image: str = Field(
        default="",
        max_length=512,
        description="Node container image; empty: the operator's default node image.",
    )
    fleet: str = Field(
        default=DEFAULT_FLEET,
        min_length=1,
        max_length=FLEET_NAME_MAX,
        pattern=FLEET_NAME_PATTERN,
        description="Fleet this node belongs to (a DNS label); immutable.",
        json_schema_extra=validations(cel("self == oldSelf", "fleet is immutable")),
    )
    p2p: P2PSpec = Field(default_factory=P2PSpec, alias="p2p", description="Peer-to-peer settings.")
    storage: StorageSpec = Field(default_factory=StorageSpec, description="Data volume.")
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="Compute resources of the node."
    )
    drain_timeout_seconds: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="How long a drain may take before the pod is deleted anyway.",
    )
    paused: bool = Field(
        default=False,
        description="Stop reconciling this node's children (the pod keeps running as it is).",
    )
    relocation: RelocationSpec = Field(
        default_factory=RelocationSpec,
        description="When its Kubernetes Node is drained or lost: relocate, or wait for it.",
    )
    scheduling: SchedulingSpec = Field(
        default_factory=SchedulingSpec,
        description=(
            "Where the pod may run: affinity, topologySpreadConstraints, tolerations, "
            "nodeSelector, priorityClassName. Default: spread softly over Nodes and zones."
        ),
    )
    template: TemplateSpec = Field(
        default_factory=TemplateSpec,
        description="Pod and container fields the spec has no field for (typed overrides).",
    )


class Phase(enum.StrEnum):
    PENDING = "Pending"
    STARTING = "Starting"
    READY = "Ready"
    REPLACING = "Replacing"
    DEGRADED = "Degraded"
    PAUSED = "Paused"
    TERMINATING = "Terminating"


class ConditionType(enum.StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    POLICY_APPLIED = "PolicyApplied"
    DEGRADED = "Degraded"


class MarketplaceNodeStatus(CamelModel):
    """Observed state, written by the operator only (one writer, patched on difference)."""

    phase: Phase | None = Field(default=None, description="Summary of the node's lifecycle.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the status reflects."
    )
    peer_id: str | None = Field(
        default=None, max_length=128, description="The node's peer id (from its identity key)."
    )
    pod_name: str | None = Field(default=None, max_length=253, description="The node's pod.")
    pod_ip: str | None = Field(
        default=None, alias="podIP", max_length=64, description="The pod's IP address."
    )
    peers: int | None = Field(default=None, ge=0, description="Number of connected peers.")
    connected_peers: list[str] = Field(
        default_factory=list,
        max_length=MAX_CONNECTED_PEERS_LISTED,
        description=f"Peer ids of connected peers (at most {MAX_CONNECTED_PEERS_LISTED}).",
    )
    policy_version: int | None = Field(
        default=None, ge=0, description="Fleet policy version the node has applied."
    )
    policy_hash: str | None = Field(
        default=None, max_length=80, description="Content hash of the applied policy."
    )
    pod_template_hash: str | None = Field(
        default=None,
        max_length=64,
        description="Hash of the inputs that shape the pod; a change means a new pod.",
    )
    under_replicated: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Packages the node knows below the fleet's replication factor, as of its "
            "repairer's last pass."
        ),
    )
    message: str | None = Field(
        default=None, max_length=1024, description="Human-readable summary of the phase."
    )
    conditions: list[Condition] = conditions_field(
        max_length=16,
        description="Ready, Progressing, PolicyApplied and Degraded (API conventions).",
    )


CRD = CrdInfo(
    kind=KIND,
    plural=PLURAL,
    singular="marketplacenode",
    short_names=("mnode", "mnodes"),
    spec=MarketplaceNodeSpec,
    status=MarketplaceNodeStatus,
    description=(
        "A MarketplaceNode is one peer of a marketplace fleet: the operator runs it as a pod "
        "with its identity Secret, data PersistentVolumeClaim and Service."
    ),
    root_validations=(
        cel(
            "self.metadata.name.size() <= 63 && "
            "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
            "metadata.name must be a DNS-1035 label (it names the node's Pod and Service)",
        ),
    ),
    selectable_fields=(".spec.fleet",),
    printer_columns=(
        PrinterColumn("Fleet", "string", ".spec.fleet", "Fleet of the node"),
        PrinterColumn("Phase", "string", ".status.phase", "Lifecycle phase"),
        PrinterColumn("Peers", "integer", ".status.peers", "Connected peers"),
        PrinterColumn(
            "Ready", "string", '.status.conditions[?(@.type=="Ready")].status', "Serving and joined"
        ),
        PrinterColumn("Policy", "integer", ".status.policyVersion", "Applied policy version"),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Age"),
        PrinterColumn("Peer-ID", "string", ".status.peerId", "Peer id", priority=1),
        PrinterColumn("Pod-IP", "string", ".status.podIP", "Pod IP", priority=1),
    ),
)
