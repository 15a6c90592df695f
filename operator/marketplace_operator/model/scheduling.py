"""Where a node's pod may run (`spec.scheduling`) and the pod fields the model has no field
for (`spec.template`): the Kubernetes types, as pydantic models, so that the CRD schema
refuses a bad value before the operator sees it and the operator reads typed objects.

The types are the Pod API's own (core/v1 Affinity, Toleration, TopologySpreadConstraint,
LabelSelector), written out here with the bounds that keep the schema's CEL cost small.
Why not the API server's OpenAPI inlined as controller-gen does: that would need a
generated schema kept beside a typed model twice; the subset here is what the pod takes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from marketplace_operator.model.common import NO_DEFAULT_KEY, CamelModel, cel, validations

NO_DEFAULT: JsonDict = {NO_DEFAULT_KEY: True}  # absent stays absent in a stored spec


class PodApiModel(CamelModel):
    """Base of the Pod API's types here."""

    model_config = ConfigDict(json_schema_extra=NO_DEFAULT)


QualifiedName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
    ),
]
"""A label or taint key: an optional DNS prefix and a name."""
LabelValue = Annotated[
    str, Field(max_length=63, pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
]
DnsLabel = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
DnsSubdomain = Annotated[
    str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
]


SelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]


_VALUES_MATCH_OPERATOR = cel(
    "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : "
    "!has(self.values) || size(self.values) == 0",
    "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
)


class LabelSelectorRequirement(PodApiModel):
    """One `key operator values` test of a label selector."""

    model_config = ConfigDict(
        json_schema_extra={**NO_DEFAULT, **validations(_VALUES_MATCH_OPERATOR)}
    )

    key: QualifiedName = Field(description="The label key.")
    operator: SelectorOperator = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[LabelValue] = Field(default_factory=list, max_length=64, description="Values.")


class LabelSelector(PodApiModel):
    """Pods (or namespaces) by their labels; the requirements are ANDed."""

    match_labels: dict[QualifiedName, LabelValue] = Field(
        default_factory=dict, max_length=32, description="Labels that must all be present."
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=16, description="Requirements that must all hold."
    )


NodeSelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]


class NodeSelectorRequirement(PodApiModel):
    """One test of a Node's labels (or fields)."""

    model_config = ConfigDict(
        json_schema_extra=NO_DEFAULT
        | validations(
            cel(
                "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : "
                "self.operator in ['Gt', 'Lt'] ? has(self.values) && size(self.values) == 1 : "
                "!has(self.values) || size(self.values) == 0",
                "values: non-empty for In and NotIn, one integer for Gt and Lt, "
                "empty for Exists and DoesNotExist",
            )
        )
    )

    key: QualifiedName = Field(description="The label key (or field name).")
    operator: NodeSelectorOperator = Field(description="In, NotIn, Exists, DoesNotExist, Gt, Lt.")
    values: list[LabelValue] = Field(default_factory=list, max_length=64, description="Values.")


class NodeSelectorTerm(PodApiModel):
    """Requirements ANDed; terms of a selector are ORed."""

    match_expressions: list[NodeSelectorRequirement] = Field(
        default_factory=list, max_length=16, description="Tests of the Node's labels."
    )
    match_fields: list[NodeSelectorRequirement] = Field(
        default_factory=list, max_length=4, description="Tests of the Node's fields."
    )


class NodeSelector(PodApiModel):
    node_selector_terms: list[NodeSelectorTerm] = Field(
        min_length=1, max_length=16, description="Terms, ORed."
    )


class PreferredSchedulingTerm(PodApiModel):
    weight: int = Field(ge=1, le=100, description="Weight of the preference.")
    preference: NodeSelectorTerm = Field(description="The Nodes preferred.")


class NodeAffinity(PodApiModel):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        default=None, description="Nodes the pod must run on."
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = Field(
        default_factory=list, max_length=16, description="Nodes the pod prefers."
    )


class PodAffinityTerm(PodApiModel):
    """Pods matching `labelSelector` in the same `topologyKey` domain (e.g. the same Node)."""

    label_selector: LabelSelector | None = Field(
        default=None, description="The pods; empty: this node's fleet."
    )
    namespaces: list[DnsLabel] = Field(
        default_factory=list, max_length=16, description="Their namespaces; empty: this one."
    )
    namespace_selector: LabelSelector | None = Field(
        default=None, description="Their namespaces by label."
    )
    topology_key: QualifiedName = Field(
        description="The Node label whose value is the domain, e.g. kubernetes.io/hostname."
    )
    match_label_keys: list[QualifiedName] = Field(
        default_factory=list, max_length=8, description="Label keys whose values must match."
    )
    mismatch_label_keys: list[QualifiedName] = Field(
        default_factory=list, max_length=8, description="Label keys whose values must differ."
    )


class WeightedPodAffinityTerm(PodApiModel):
    weight: int = Field(ge=1, le=100, description="Weight of the preference.")
    pod_affinity_term: PodAffinityTerm = Field(description="The term.")


class PodAffinity(PodApiModel):
    """Used for both pod affinity and pod anti-affinity."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] = Field(
        default_factory=list, max_length=16, description="Terms that must hold."
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] = Field(
        default_factory=list, max_length=16, description="Terms preferred."
    )


class Affinity(PodApiModel):
    """The Pod's `affinity`."""

    node_affinity: NodeAffinity | None = Field(default=None, description="Node affinity.")
    pod_affinity: PodAffinity | None = Field(default=None, description="Pod affinity.")
    pod_anti_affinity: PodAffinity | None = Field(default=None, description="Pod anti-affinity.")


TolerationOperator = Literal["Exists", "Equal"]


TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class Toleration(PodApiModel):
    """Lets the pod run on Nodes with a matching taint."""

    model_config = ConfigDict(
        json_schema_extra=NO_DEFAULT
        | validations(
            cel(
                "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || "
                "self.value == ''",
                "a toleration with operator Exists has no value",
            ),
            cel(
                "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                "tolerationSeconds applies to effect NoExecute only",
            ),
        )
    )

    key: QualifiedName | None = Field(default=None, description="Taint key; empty: all.")
    operator: TolerationOperator | None = Field(default=None, description="Equal or Exists.")
    value: LabelValue | None = Field(default=None, description="Taint value (Equal).")
    effect: TaintEffect | None = Field(default=None, description="Taint effect; empty: all.")
    toleration_seconds: int | None = Field(
        default=None, ge=0, le=31_536_000, description="How long a NoExecute taint is tolerated."
    )


Unsatisfiable = Literal["DoNotSchedule", "ScheduleAnyway"]


InclusionPolicy = Literal["Honor", "Ignore"]


class TopologySpreadConstraint(PodApiModel):
    """How evenly matching pods must spread over the domains of `topologyKey`."""

    max_skew: int = Field(ge=1, le=1000, description="Most the domains' counts may differ.")
    topology_key: QualifiedName = Field(description="The Node label that names a domain.")
    when_unsatisfiable: Unsatisfiable = Field(description="DoNotSchedule or ScheduleAnyway.")
    label_selector: LabelSelector | None = Field(
        default=None, description="The pods counted; empty: this node's fleet."
    )
    min_domains: int | None = Field(default=None, ge=1, le=1000, description="Minimum domains.")
    node_affinity_policy: InclusionPolicy | None = Field(default=None, description="Honor/Ignore.")
    node_taints_policy: InclusionPolicy | None = Field(default=None, description="Honor/Ignore.")
    match_label_keys: list[QualifiedName] = Field(
        default_factory=list, max_length=8, description="Label keys whose values must match."
    )


class SchedulingSpec(PodApiModel):
    """Where the node's pod may run, as the Pod's own fields. Changing it replaces the pod
    (through the fleet's rollout)."""

    affinity: Affinity | None = Field(default=None, description="Node and pod (anti-)affinity.")
    topology_spread_constraints: list[TopologySpreadConstraint] | None = Field(
        default=None,
        max_length=8,
        description=(
            "How the fleet's pods spread. Unset: softly over Nodes (kubernetes.io/hostname) "
            "and zones (topology.kubernetes.io/zone), maxSkew 1, ScheduleAnyway. Empty: no "
            "spreading."
        ),
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=16, description="Taints the pod tolerates."
    )
    node_selector: dict[QualifiedName, LabelValue] = Field(
        default_factory=dict, max_length=16, description="Node labels the pod requires."
    )
    priority_class_name: DnsSubdomain | None = Field(
        default=None, description="PriorityClass of the pod (it must exist)."
    )


class TemplateMetadata(PodApiModel):
    """Labels and annotations added to the pod (the operator's own keys win)."""

    labels: dict[QualifiedName, LabelValue] = Field(
        default_factory=dict, max_length=32, description="Extra pod labels."
    )
    annotations: dict[QualifiedName, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict, max_length=32, description="Extra pod annotations."
    )


class HostAlias(PodApiModel):
    ip: str = Field(max_length=64, pattern=r"^[0-9a-fA-F:.]+$", description="IP address.")
    hostnames: list[DnsSubdomain] = Field(min_length=1, max_length=16, description="Names.")


class LocalObjectReference(PodApiModel):
    name: DnsSubdomain = Field(description="Name of an object in the node's namespace.")


class PodTemplate(PodApiModel):
    """Pod fields the model has no field of its own for."""

    metadata: TemplateMetadata = Field(
        default_factory=TemplateMetadata, description="Extra labels and annotations."
    )
    host_aliases: list[HostAlias] = Field(
        default_factory=list, max_length=16, description="Entries added to /etc/hosts."
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, max_length=8, description="Secrets for pulling the image."
    )
    runtime_class_name: DnsSubdomain | None = Field(default=None, description="RuntimeClass.")
    scheduler_name: DnsSubdomain | None = Field(default=None, description="Scheduler to use.")


EnvName = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
]
OPERATOR_ENV: tuple[str, ...] = tuple(
    f"MARKETPLACE_NODE_{name}"
    for name in (
        "HOST", "PORT", "PRIVATE_PORT", "DATA_DIR", "IDENTITY_FILE", "ADMIN_TOKEN_FILE",
        "POLICY_DIR", "FLEET",
        "MAX_PEERS", "DRAIN_TIMEOUT_SECONDS", "BOOTSTRAP_PEERS",
    )
)  # fmt: skip
"""Variables the operator sets on the node container: `template.container.env` may not
name them (a unit test keeps this list and the rendered pod in step)."""


class EnvVar(PodApiModel):
    name: EnvName = Field(description="Variable name (not one the operator sets).")
    value: str = Field(default="", max_length=4096, description="Its value.")


_RESERVED = ", ".join(f"'{n}'" for n in OPERATOR_ENV)


class ContainerTemplate(PodApiModel):
    """Node container fields the model has no field of its own for."""

    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=32,
        description="Extra environment variables.",
        json_schema_extra=validations(
            cel(
                f"self.all(e, !(e.name in [{_RESERVED}]))",
                "template.container.env may not set a variable the operator sets "
                "(MARKETPLACE_NODE_HOST, _PORT, …: see docs/contracts.md)",
            ),
            cel("self.all(a, self.exists_one(b, b.name == a.name))", "env names must be unique"),
        ),
    )


class TemplateSpec(PodApiModel):
    """The typed override path for what the pod takes and the model lacks (as Strimzi's
    `template`): applied on top of what the operator renders, never replacing its own."""

    pod: PodTemplate = Field(default_factory=PodTemplate, description="Pod fields.")
    container: ContainerTemplate = Field(
        default_factory=ContainerTemplate, description="Node container fields."
    )
