"""The MarketplaceFleet custom resource: fleet-wide rollout settings and the rollout's record.

A fleet is the set of MarketplaceNodes of a namespace with the same
`spec.fleet`; this object carries what belongs to the fleet as a whole
(`maxUnavailable`, the step timeout, the pause switch) and, in its status,
the rolling restart's durable record and visible plan. Its name is the fleet's
name. The operator creates an empty one (all defaults) for a fleet that has
none, so every fleet's rollout has a place to record its progress.

Why a kind and not a field or annotations (docs/rollout.md): a fleet-wide
value on each MarketplaceNode could disagree between nodes; annotations on
the policy ConfigMap would mix two owners on one object and give no schema.
A small kind gets validation, `kubectl explain`, printer columns and a status
subresource of its own, so the rollout writes only its own object's status.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from datetime import datetime
from typing import Annotated, Final

from marketplace_protocol.admin import (
    MAX_PEER_NETWORKS,
    MAX_REPLICATION,
    MAX_SEEDS,
    Peering,
    Replication,
)
from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from marketplace_operator.model.common import (
    FLEET_NAME_MAX,
    LABEL_PREFIX,
    NO_DEFAULT_KEY,
    CamelModel,
    Condition,
    CrdInfo,
    PrinterColumn,
    cel,
    conditions_field,
    validations,
)
from marketplace_operator.model.mnode import PeerUrl
from marketplace_operator.model.tls import TlsSpec

KIND: Final = "MarketplaceFleet"
PLURAL: Final = "marketplacefleets"
PAUSED_ANNOTATION: Final = f"{LABEL_PREFIX}paused"
"""`"true"` on a MarketplaceFleet stops its rollout after the current step."""
LEAVING_ANNOTATION: Final = f"{LABEL_PREFIX}leaving"
"""On a pod the rollout is taking out: its `joined` gate stays off (the node loop keeps it so)."""
RESTARTED_AT_ANNOTATION: Final = f"{LABEL_PREFIX}restartedAt"
"""On a MarketplaceNode: a new value asks for a new pod (as `kubectl rollout restart`)."""

DEFAULT_MIN_IN_SYNC: Final = 2
MAX_PLAN_ENTRIES: Final = 256
MAX_FAILURES: Final = 16
MAX_STEPS: Final = 256
"""Replacements in flight at once (`status.steps` holds one entry each), whatever
`maxUnavailable` allows: it bounds the status object (a step is a few hundred bytes) and
the pod patches of one pass, which are all sent together."""
PERCENT_PATTERN: Final = r"^(100|[1-9][0-9]?)%$"
_PERCENT_RE: Final = re.compile(PERCENT_PATTERN)
MAX_UNAVAILABLE_RULE: Final = f"type(self) == int ? self >= 1 : self.matches('{PERCENT_PATTERN}')"
MAX_UNAVAILABLE_MESSAGE: Final = (
    "maxUnavailable must be an integer of at least 1 or a percentage from 1% to 100%, e.g. 10%"
)


def _check_max_unavailable(value: int | str) -> int | str:
    """The schema's rule, for the operator's own reading (objects stored before it)."""
    if isinstance(value, int) and value >= 1:
        return value
    if isinstance(value, str) and _PERCENT_RE.fullmatch(value):
        return value
    raise ValueError(f"{MAX_UNAVAILABLE_MESSAGE}, not {value!r}")


MaxUnavailable = Annotated[
    int | str,
    AfterValidator(_check_max_unavailable),
    Field(
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            # "100%": it also bounds the CEL rule's estimated cost (a string's length).
            "maxLength": 4,
            **validations(cel(MAX_UNAVAILABLE_RULE, MAX_UNAVAILABLE_MESSAGE)),
        }
    ),
]
"""Kubernetes' IntOrString as a Deployment's maxUnavailable has it: a count or "N%"."""


def resolve_max_unavailable(value: int | str, members: int) -> int:
    """How many of a fleet's `members` may be out: a count as given, a percentage of the
    members rounded down (as a Deployment's maxUnavailable), but at least 1 so that a
    rollout can always proceed (10% of 5 members is 1, not 0)."""
    if isinstance(value, int):
        return value
    return max(1, members * int(value.removesuffix("%")) // 100)


class ReplicationSpec(CamelModel):
    """How many nodes keep each package, and how many must hold it before a publish is
    answered 201 (Kafka's `min.insync.replicas`). Both are capped at the fleet's size by
    the nodes; the operator passes them in the fleet's policy document (docs/packages.md)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.minInSync) || self.minInSync <= self.factor",
                "minInSync must not exceed factor",
            )
        )
    )

    factor: int = Field(
        default=3,
        ge=1,
        le=MAX_REPLICATION,
        description="Copies of every package the fleet keeps (capped at the fleet's size).",
    )
    min_in_sync: int | None = Field(
        default=None,
        ge=1,
        le=MAX_REPLICATION,
        description=(
            "Nodes that hold a package's verified, fsynced bytes before its publish is "
            f"acknowledged; at most factor. Unset: {DEFAULT_MIN_IN_SYNC}, or factor if smaller."
        ),
    )

    @model_validator(mode="after")
    def _in_sync_within_factor(self) -> ReplicationSpec:
        if self.min_in_sync is not None and self.min_in_sync > self.factor:
            raise ValueError("minInSync must not exceed factor")
        return self

    def wire(self) -> Replication:
        """What the nodes receive: both numbers, the default made explicit."""
        in_sync = self.min_in_sync
        if in_sync is None:
            in_sync = min(DEFAULT_MIN_IN_SYNC, self.factor)
        return Replication(factor=self.factor, min_in_sync=in_sync)


class ServiceType(enum.StrEnum):
    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"


class TrafficPolicy(enum.StrEnum):
    CLUSTER = "Cluster"
    LOCAL = "Local"


class ExposureSpec(CamelModel):
    """The fleet's entry Service (`<fleet>-entry`): the public port of every ready node,
    for clients and peers outside the fleet. Never the private port."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.type != 'ClusterIP' || !has(self.externalTrafficPolicy)",
                "externalTrafficPolicy needs type NodePort or LoadBalancer",
                reason="FieldValueForbidden",
            )
        )
    )

    type: ServiceType = Field(
        default=ServiceType.CLUSTER_IP,
        description="ClusterIP (inside the cluster), NodePort or LoadBalancer.",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        max_length=64,
        description="Annotations of the Service, e.g. a cloud's load-balancer settings.",
    )
    external_traffic_policy: TrafficPolicy | None = Field(
        default=None,
        description=(
            "Local keeps the client's address (docs/operations.md, \"Client addresses "
            "behind a balancer\"); Cluster spreads over every node. Unset: Kubernetes' default."
        ),
    )


class PeeringSpec(CamelModel):
    """Peers beyond the fleet (another fleet, another cluster): where they may connect
    from, and whom the fleet's nodes greet first. Bans still win over an allowance."""

    # Absent stays absent: an empty peering (members only) is not the same as none.
    model_config = ConfigDict(json_schema_extra={NO_DEFAULT_KEY: True})

    allowed_networks: list[
        Annotated[
            str,
            Field(
                max_length=64,
                json_schema_extra=validations(
                    cel("isCIDR(self)", "each allowed network must be a CIDR, e.g. 10.8.0.0/16")
                ),
            ),
        ]
    ] = Field(
        default_factory=list,
        max_length=MAX_PEER_NETWORKS,
        description=(
            "CIDRs a peer outside the fleet may connect from. With peering set, a peer "
            "that is neither a member of the fleet nor inside one of these is refused "
            "(403 peer_not_allowed). Empty: members only."
        ),
    )
    seeds: list[PeerUrl] = Field(
        default_factory=list,
        max_length=MAX_SEEDS,
        description=(
            "Base URLs of nodes outside the fleet to greet (http(s)://HOST:PORT); their "
            "addresses must be in allowedNetworks unless given by name."
        ),
    )

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    def wire(self) -> Peering:
        """What the nodes receive: networks in canonical form."""
        return Peering(
            allowed_networks=tuple(
                str(ipaddress.ip_network(c, strict=False)) for c in self.allowed_networks
            ),
            seeds=tuple(self.seeds),
        )


class MarketplaceFleetSpec(CamelModel):
    """Fleet-wide settings: package replication, rolling-restart pacing. Users' only."""

    max_unavailable: MaxUnavailable = Field(
        default=1,
        description=(
            "Most nodes of the fleet that may be unavailable at once during a rollout, "
            "counting nodes that are already unready or not joined: a count (1, 100) or a "
            "percentage of the fleet's members (10%), rounded down but at least 1. Also the "
            "fleet's PodDisruptionBudget. At most "
            f"{MAX_STEPS} replacements run at once, however large the budget."
        ),
    )
    step_timeout_seconds: int = Field(
        default=300,
        ge=5,
        le=86_400,
        description=(
            "How long a replacement pod may take to become Ready and joined (after the "
            "old pod's grace period) before the rollout stops with Degraded."
        ),
    )
    replication: ReplicationSpec = Field(
        default_factory=ReplicationSpec,
        description="Copies of each package and the copies a publish waits for.",
    )
    tls: TlsSpec = Field(
        default_factory=TlsSpec,
        description="HTTPS on the public listener and where its certificates come from.",
    )
    exposure: ExposureSpec = Field(
        default_factory=ExposureSpec,
        description="The fleet's entry Service for clients and peers outside the fleet.",
    )
    peering: PeeringSpec | None = Field(
        default=None,
        description=(
            "Peering beyond the fleet. Unset: the nodes peer with their own fleet only, "
            "from any address."
        ),
    )


class StepPhase(enum.StrEnum):
    """Where one node's replacement is: taking the old pod out of load balancers (its
    `joined` readiness gate turned off), draining it, or replacing it."""

    LEAVING = "Leaving"
    DRAINING = "Draining"
    REPLACING = "Replacing"


class RolloutStep(CamelModel):
    """One node being replaced, recorded before anything is done to it (crash-safe)."""

    node: str = Field(max_length=253, description="The MarketplaceNode being replaced.")
    phase: StepPhase = Field(description="Leaving (out of load balancers), Draining, Replacing.")
    target_hash: str = Field(max_length=64, description="Pod-template hash the node is moving to.")
    target_restart: str | None = Field(
        default=None, max_length=64, description="restartedAt value the new pod answers."
    )
    reasons: list[str] = Field(
        default_factory=list, max_length=4, description="Why the node needs a new pod."
    )
    started_at: datetime = Field(description="When the step began (RFC 3339).")
    phase_since: datetime = Field(description="When the step entered its phase (RFC 3339).")


class RolloutFailure(CamelModel):
    """A replacement that did not become Ready and joined in time: the rollout is halted."""

    node: str = Field(max_length=253, description="The MarketplaceNode whose pod failed.")
    target_hash: str = Field(max_length=64, description="The pod-template hash that failed.")
    target_restart: str | None = Field(
        default=None, max_length=64, description="The restartedAt value that failed."
    )
    reason: str = Field(
        max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9]*$", description="CamelCase cause."
    )
    message: str = Field(default="", max_length=1024, description="What was observed.")
    since: datetime = Field(description="When the rollout stopped (RFC 3339).")


class PlanEntry(CamelModel):
    """One node still to be replaced, in the order the rollout will take them."""

    node: str = Field(max_length=253, description="The MarketplaceNode.")
    reasons: list[str] = Field(
        default_factory=list, max_length=4, description="Why it needs a new pod."
    )
    unavailable: bool = Field(
        default=False, description="Already unready or not joined (replaced first)."
    )


class RolloutPhase(enum.StrEnum):
    """Summary of the fleet's rollout."""

    COMPLETE = "Complete"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    WAITING = "Waiting"
    DEGRADED = "Degraded"


class MarketplaceFleetStatus(CamelModel):
    """The rollout's record (steps, failures) and its visible plan; written by the operator."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the status reflects."
    )
    phase: RolloutPhase | None = Field(default=None, description="Summary of the rollout.")
    nodes: int = Field(default=0, ge=0, description="MarketplaceNodes in the fleet.")
    updated: int = Field(
        default=0, ge=0, description="Nodes on their desired pod, Ready and joined."
    )
    unavailable: int = Field(
        default=0, ge=0, description="Nodes unready, not joined, draining or being replaced."
    )
    current: str | None = Field(
        default=None, max_length=253, description="Node(s) being replaced now, comma-separated."
    )
    blocked_by: str | None = Field(
        default=None, max_length=1024, description="What keeps the next step from starting."
    )
    steps: list[RolloutStep] = Field(
        default_factory=list,
        max_length=MAX_STEPS,
        description=(
            "Replacements in progress, recorded before they are acted on "
            f"(at most {MAX_STEPS} at once)."
        ),
    )
    failures: list[RolloutFailure] = Field(
        default_factory=list,
        max_length=MAX_FAILURES,
        description="Replacements that failed; the rollout waits until they are fixed.",
    )
    plan: list[PlanEntry] = Field(
        default_factory=list,
        max_length=MAX_PLAN_ENTRIES,
        description=f"Nodes still to be replaced, in order (first {MAX_PLAN_ENTRIES}).",
    )
    pending: int = Field(default=0, ge=0, description="How many nodes still need a new pod.")
    under_replicated: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Packages below the replication factor: the most any node of the fleet reports "
            "(each counts the packages it knows, as of its repairer's last pass)."
        ),
    )
    conditions: list[Condition] = conditions_field(
        max_length=8, description="Progressing and Degraded (API conventions)."
    )


CRD = CrdInfo(
    kind=KIND,
    plural=PLURAL,
    singular="marketplacefleet",
    short_names=("mfleet", "mfleets"),
    spec=MarketplaceFleetSpec,
    status=MarketplaceFleetStatus,
    description=(
        "A MarketplaceFleet holds the settings of one fleet (its name is the fleet's name): "
        "package replication and rolling restarts, and shows their progress and the "
        "packages below the replication factor. Annotate it with "
        f"{PAUSED_ANNOTATION}=true to pause a rollout after the current step."
    ),
    root_validations=(
        cel(
            f"self.metadata.name.size() <= {FLEET_NAME_MAX} && "
            "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
            "metadata.name must be the fleet's name "
            f"(a DNS label of at most {FLEET_NAME_MAX} characters)",
        ),
    ),
    printer_columns=(
        PrinterColumn("Nodes", "integer", ".status.nodes", "MarketplaceNodes in the fleet"),
        PrinterColumn("Updated", "integer", ".status.updated", "Nodes on their desired pod"),
        PrinterColumn("Unavailable", "integer", ".status.unavailable", "Nodes out"),
        PrinterColumn("Phase", "string", ".status.phase", "Rollout phase"),
        PrinterColumn("Current", "string", ".status.current", "Node being replaced"),
        PrinterColumn(
            "Under-Replicated",
            "integer",
            ".status.underReplicated",
            "Packages below the replication factor",
        ),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Age"),
        PrinterColumn("Blocked-By", "string", ".status.blockedBy", "Why waiting", priority=1),
        PrinterColumn(
            "Factor", "integer", ".spec.replication.factor", "Copies per package", priority=1
        ),
        PrinterColumn(
            "MinInSync",
            "integer",
            ".spec.replication.minInSync",
            "Copies a publish waits for",
            priority=1,
        ),
    ),
)
