"""Shared pieces of the CRD models: the camelCase base, conditions, quantities, CRD metadata.

Pure: no kopf, kubernetes or aiohttp imports (checked by import-linter). The
models are the one source of truth for both validation in the operator and
the CRD schemas that `crdgen` renders.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

GROUP = "marketplace.p2p.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
LABEL_PREFIX = f"{GROUP}/"

FLEET_NAME_MAX = 50
"""One limit for a fleet's name, wherever it is written: the longest derived name
(`<fleet>-policy-<n>` for a policy shard ConfigMap, the `-auto` BanList) must stay a
valid object name and label value (63 characters)."""
FLEET_NAME_PATTERN = rf"^[a-z0-9]([-a-z0-9]{{0,{FLEET_NAME_MAX - 2}}}[a-z0-9])?$"
# Kubernetes resource.Quantity as the API server's own regular expression has it, without
# the leading sign: no resource this operator sizes can be negative.
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)


NO_DEFAULT_KEY = "x-marketplace-no-default"
"""On a model's schema: crdgen does not default the object to `{}` when it is absent (for
objects with no defaults of their own, where an empty object in every spec is noise)."""


def cel(rule: str, message: str, *, reason: str | None = None) -> JsonDict:
    """One `x-kubernetes-validations` entry; `reason` e.g. FieldValueForbidden."""
    out: JsonDict = {"rule": rule, "message": message}
    if reason is not None:
        out["reason"] = reason
    return out


def validations(*rules: JsonDict) -> JsonDict:
    """`json_schema_extra` carrying CEL rules for `crdgen`."""
    return {"x-kubernetes-validations": list(rules)}


def _check_quantity(value: int | str) -> int | str:
    """The operator's own reading of a quantity: the schema's rules, for objects stored
    before them (an int is not covered by the pattern, which constrains strings only)."""
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{value} is negative")
    if isinstance(value, str) and not _QUANTITY_RE.match(value):
        raise ValueError(f"{value!r} is not a non-negative Kubernetes quantity (e.g. 500m, 1Gi)")
    return value


NON_NEGATIVE_QUANTITY = "!quantity(string(self)).isLessThan(quantity('0'))"
POSITIVE_QUANTITY = "quantity(string(self)).isGreaterThan(quantity('0'))"

Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    Field(
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
            "maxLength": 64,
            # The pattern constrains strings only; an integer (-1) needs the rule.
            "x-kubernetes-validations": [
                {"rule": NON_NEGATIVE_QUANTITY, "message": "must not be negative"}
            ],
        }
    ),
]
"""A non-negative Kubernetes quantity (`1Gi`, `500m`, `2`); rendered as int-or-string."""


class CamelModel(BaseModel):
    """Base of every CRD model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
    )


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(CamelModel):
    """One condition, as the Kubernetes API conventions (metav1.Condition) define it."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-zA-Z0-9.-]+/)?[A-Za-z][A-Za-z0-9_]*$",
        description="Type of condition in CamelCase, e.g. Ready.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Programmatic CamelCase identifier of the last transition's cause.",
    )
    message: str = Field(default="", max_length=4096, description="Human-readable details.")
    last_transition_time: str = Field(
        json_schema_extra={"format": "date-time"},
        description="When the status last changed (RFC 3339).",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation this condition was set for."
    )


def conditions_field(*, max_length: int, description: str) -> Any:
    """A status `conditions` list, merged by `type` under server-side apply (API conventions)."""
    return Field(
        default_factory=list,
        max_length=max_length,
        description=description,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


def rfc3339(moment: datetime) -> str:
    """An aware datetime as the API server writes it: UTC, seconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_condition(previous: list[Condition], new: Condition) -> list[Condition]:
    """Put `new` in place of the condition of its type; keep the old transition time if the
    status did not change (API conventions: lastTransitionTime moves only on a flip)."""
    out: list[Condition] = []
    placed = False
    for cond in previous:
        if cond.type != new.type:
            out.append(cond)
            continue
        placed = True
        if cond.status == new.status:
            new = new.model_copy(update={"last_transition_time": cond.last_transition_time})
        out.append(new)
    if not placed:
        out.append(new)
    return out


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0
    format: str | None = None


@dataclass(frozen=True)
class CrdInfo:
    """Everything `crdgen` needs to render one CustomResourceDefinition."""

    kind: str
    plural: str
    singular: str
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("marketplace",)
    printer_columns: tuple[PrinterColumn, ...] = ()
    root_validations: tuple[JsonDict, ...] = ()
    # JSON paths a client may filter on with --field-selector (e.g. one fleet's nodes).
    selectable_fields: tuple[str, ...] = ()
    extra_status_properties: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"
