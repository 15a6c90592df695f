"""The `BanList` custom resource: bans (and explicit lifts) of peers or networks, and
takedowns of content (a digest, a `name@version`, a name, a publisher key), for a fleet.

The spec is what a user writes; the schema carries CEL rules so that
`kubectl apply` refuses a malformed entry before the operator sees it. The
Python validators mirror the CEL rules, so a model built in a test is as
strict as the API server.

Design choices, documented in docs/policy.md:

- `fleet` names one fleet; `"*"` or omitted selects every fleet of the namespace.
- `duration` counts from the BanList's `metadata.creationTimestamp`, so the
  expiry is a pure function of the object (an operator restart never extends
  or shortens a ban). To add a timed ban to an old list, use `expiresAt`.
- At most one of `duration` and `expiresAt`; neither means "until lifted".
- `action: allow` lifts every ban of the same target (same peer id, or the
  same network) in the fleet, manual or automatic, while the allow entry is
  in force. Allow beats ban regardless of which object holds it.
- A takedown is an entry whose target is content rather than a peer; it travels,
  expires, is lifted and reports convergence exactly as a ban (docs/packages.md).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Final

from marketplace_protocol.admin import (
    DIGEST_PATTERN,
    PACKAGE_NAME_MAX,
    PACKAGE_NAME_PATTERN,
    PACKAGE_REF_PATTERN,
    PEER_ID_PATTERN,
    VERSION_MAX,
)
from pydantic import ConfigDict, Field, field_validator, model_validator

from marketplace_operator.model.common import (
    FLEET_NAME_MAX,
    FLEET_NAME_PATTERN,
    CamelModel,
    Condition,
    CrdInfo,
    PrinterColumn,
    cel,
    conditions_field,
    validations,
)

MAX_ENTRIES_PER_OBJECT: Final = 2_000
"""Entries one BanList may hold; larger lists are split across several objects.

2,000 entries of the largest allowed size stay well under etcd's 1.5 MiB
object limit, and keep the API server's CEL cost estimate within budget.
"""

MAX_DURATION: Final = timedelta(days=3_650)
ALL_FLEETS: Final = "*"
FLEET_PATTERN: Final = rf"^(\*|{FLEET_NAME_PATTERN[1:-1]})$"
MAX_DURATION_CEL: Final = f"{int(MAX_DURATION.total_seconds()) // 3600}h"
DURATION_PATTERN: Final = r"^([0-9]{1,9}(\.[0-9]{1,9})?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,9})?)(ms|s|m|h)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3_600.0}


class CrdModel(CamelModel):
    """A CRD model that is also a value: frozen, so it can be shared between tasks and hashed."""

    model_config = ConfigDict(frozen=True)


class Action(enum.StrEnum):
    """What an entry does to its target."""

    BAN = "ban"
    ALLOW = "allow"


def parse_duration(text: str) -> timedelta:
    """A Go-style duration (`90s`, `1h30m`, `250ms`) as a timedelta; refuses anything else."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: use e.g. 90s, 15m, 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise ValueError("duration must be positive")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError("duration must not exceed 3650 days")
    return timedelta(seconds=seconds)


def canonical_cidr(cidr: str) -> str:
    """The network a CIDR denotes, in canonical form (`10.1.2.3/8` → `10.0.0.0/8`)."""
    return str(ipaddress.ip_network(cidr, strict=False))


class Provenance(CrdModel):
    """Why the operator banned a target fleet-wide: which nodes decided it, when, why."""

    nodes: list[Annotated[str, Field(max_length=253)]] = Field(
        default_factory=list,
        max_length=16,
        description="MarketplaceNodes that banned the peer locally (first 16, sorted).",
    )
    node_count: int = Field(ge=0, alias="nodeCount", description="How many nodes reported the ban.")
    first_seen: datetime | None = Field(
        default=None, alias="firstSeen", description="Earliest local ban among the nodes."
    )
    last_seen: datetime | None = Field(
        default=None, alias="lastSeen", description="Latest local ban among the nodes."
    )
    reasons: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list, max_length=8, description="Distinct reasons given (first 8)."
    )
    offences: int = Field(ge=0, description="Offences counted by the reporting nodes.")


PEER_TARGETS: Final = ("peerId", "cidr")
CONTENT_TARGETS: Final = ("digest", "package", "name", "publisher")
_ONE_TARGET = " + ".join(f"(has(self.{t}) ? 1 : 0)" for t in PEER_TARGETS + CONTENT_TARGETS)
ONE_TARGET_MESSAGE: Final = "set exactly one of peerId, cidr, digest, package, name and publisher"


class BanListEntry(CrdModel):
    """One ban or lift of exactly one target: a peer id or a network (CIDR), or, as a
    takedown, content: a digest, a `name@version`, a whole name or a publisher key."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(f"{_ONE_TARGET} == 1", ONE_TARGET_MESSAGE),
            cel(
                "!has(self.cidr) || isCIDR(self.cidr)",
                "cidr must be a network in CIDR notation, e.g. 203.0.113.0/24",
            ),
            cel(
                "!(has(self.duration) && has(self.expiresAt))",
                "set at most one of duration and expiresAt (neither: until lifted)",
            ),
        )
    )

    peer_id: str | None = Field(
        default=None,
        alias="peerId",
        pattern=PEER_ID_PATTERN,
        max_length=128,
        description="Peer id to ban or allow.",
    )
    cidr: str | None = Field(
        default=None,
        max_length=64,
        description="Network to ban or allow, e.g. 203.0.113.0/24.",
    )
    digest: str | None = Field(
        default=None,
        pattern=DIGEST_PATTERN,
        max_length=64,
        description="Takedown: content with this sha256 (hex), under any name.",
    )
    package: str | None = Field(
        default=None,
        pattern=PACKAGE_REF_PATTERN,
        max_length=PACKAGE_NAME_MAX + 1 + VERSION_MAX,
        description="Takedown: one version of a package, as name@version.",
    )
    name: str | None = Field(
        default=None,
        pattern=PACKAGE_NAME_PATTERN,
        max_length=PACKAGE_NAME_MAX,
        description="Takedown: every version of a package name.",
    )
    publisher: str | None = Field(
        default=None,
        pattern=PEER_ID_PATTERN,
        max_length=128,
        description="Takedown: every package signed by this author (or node) key.",
    )
    action: Action = Field(
        default=Action.BAN,
        description="ban, or allow: lift every ban of the same target in the fleet.",
    )
    reason: str = Field(default="", max_length=256, description="Why; shown to operators.")
    expires_at: datetime | None = Field(
        default=None,
        alias="expiresAt",
        description="When the entry stops applying (RFC 3339). At most one of this and duration.",
    )
    duration: str | None = Field(
        default=None,
        max_length=32,
        pattern=DURATION_PATTERN,
        description=(
            "How long the entry applies, counted from the BanList's creation, e.g. 24h; "
            f"more than 0s, at most 3650 days ({MAX_DURATION_CEL})."
        ),
        json_schema_extra=validations(
            cel(
                "duration(self) > duration('0s') && "
                f"duration(self) <= duration('{MAX_DURATION_CEL}')",
                f"duration must be more than 0s and at most 3650 days ({MAX_DURATION_CEL})",
            )
        ),
    )
    provenance: Provenance | None = Field(
        default=None,
        description="Set by the operator on automatic bans: which nodes decided it and why.",
    )

    @field_validator("cidr")
    @classmethod
    def _valid_cidr(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_network(value, strict=False)
        return value

    @field_validator("duration")
    @classmethod
    def _valid_duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _one_target_one_expiry(self) -> BanListEntry:
        if sum(t is not None for t in self._targets()) != 1:
            raise ValueError(ONE_TARGET_MESSAGE)
        if self.duration is not None and self.expires_at is not None:
            raise ValueError("set at most one of duration and expiresAt")
        return self

    def _targets(self) -> tuple[str | None, ...]:
        return (self.peer_id, self.cidr, self.digest, self.package, self.name, self.publisher)

    @property
    def takedown(self) -> bool:
        """About content (a digest, a version, a name, a publisher), not about a peer."""
        return self.peer_id is None and self.cidr is None

    @property
    def target(self) -> str:
        """The identity of what this entry is about: `peer:<id>`, `cidr:<network>`,
        `digest:<hex>`, `package:<name@version>`, `name:<name>` or `publisher:<id>`."""
        if self.peer_id is not None:
            return f"peer:{self.peer_id}"
        if self.cidr is not None:
            return f"cidr:{canonical_cidr(self.cidr)}"
        kind, value = next(
            (kind, value)
            for kind, value in zip(CONTENT_TARGETS, self._targets()[2:], strict=True)
            if value is not None
        )
        return f"{kind}:{value}"

    def expiry(self, created: datetime) -> datetime | None:
        """When the entry stops applying, given its BanList's creation time; None = never."""
        if self.expires_at is not None:
            return self.expires_at
        if self.duration is not None:
            return created + parse_duration(self.duration)
        return None


class BanListSpec(CrdModel):
    """Bans for one fleet, or for every fleet of the namespace."""

    fleet: str = Field(
        default=ALL_FLEETS,
        max_length=FLEET_NAME_MAX,
        pattern=FLEET_PATTERN,
        description='Fleet the entries apply to; "*" (the default) means every fleet here.',
    )
    entries: list[BanListEntry] = Field(
        default_factory=list,
        max_length=MAX_ENTRIES_PER_OBJECT,
        description=(
            f"At most {MAX_ENTRIES_PER_OBJECT} entries; split bigger lists across objects."
        ),
    )

    def selects(self, fleet: str) -> bool:
        return self.fleet in (ALL_FLEETS, fleet)


class BanList(CrdModel):
    """A BanList as the operator reads it: identity, creation time, spec and last status."""

    namespace: str
    name: str
    created: datetime
    uid: str = ""
    generation: int = 0
    spec: BanListSpec = Field(default_factory=BanListSpec)
    status: dict[str, Any] = Field(default_factory=dict)


MAX_LAGGING_LISTED: Final = 10
MAX_FLEETS_LISTED: Final = 64


class PolicyConditionType(enum.StrEnum):
    READY = "Ready"  # the object is valid and part of its fleets' effective policy
    POLICY_CONVERGED = "PolicyConverged"  # every node of those fleets applied that policy


class FleetConvergence(CrdModel):
    """How far one selected fleet's nodes got with the policy that includes this object."""

    fleet: str = Field(max_length=FLEET_NAME_MAX, description="Fleet name.")
    policy_version: int = Field(ge=0, description="Fleet policy version that includes this object.")
    converged: int = Field(ge=0, description="Nodes that applied that version or a newer one.")
    nodes: int = Field(ge=0, description="Nodes in the fleet.")
    lagging: list[Annotated[str, Field(max_length=253)]] = Field(
        default_factory=list,
        max_length=MAX_LAGGING_LISTED,
        description=f"Nodes not there yet (first {MAX_LAGGING_LISTED}, sorted).",
    )


class PolicyObjectStatus(CrdModel):
    """Status shared by BanList and RateLimitPolicy, written by the operator only."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the status reflects."
    )
    fleet_policy_version: int | None = Field(
        default=None,
        ge=0,
        description="Lowest fleet policy version (over the selected fleets) including this object.",
    )
    converged_nodes: str | None = Field(
        default=None,
        max_length=32,
        pattern=r"^[0-9]+/[0-9]+$",
        description="Nodes on that policy / nodes selected, e.g. 3/3.",
    )
    fleets: list[FleetConvergence] = Field(
        default_factory=list,
        max_length=MAX_FLEETS_LISTED,
        description=f"Per selected fleet (first {MAX_FLEETS_LISTED} by name).",
    )
    conditions: list[Condition] = conditions_field(
        max_length=8, description="Ready and PolicyConverged (Kubernetes API conventions)."
    )


class BanListStatus(PolicyObjectStatus):
    """BanList status: convergence plus entry counts for `kubectl get`."""

    entries: int | None = Field(default=None, ge=0, description="Entries in the spec.")
    expired_entries: int | None = Field(
        default=None, ge=0, description="Entries already expired (ignored)."
    )


def converged_columns() -> tuple[PrinterColumn, ...]:
    return (
        PrinterColumn(
            "Converged", "string", ".status.convergedNodes", "Nodes on the current policy"
        ),
        PrinterColumn(
            "Version", "integer", ".status.fleetPolicyVersion", "Fleet policy version including it"
        ),
        PrinterColumn(
            "Ready", "string", '.status.conditions[?(@.type=="Ready")].status', "Valid and applied"
        ),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Age"),
    )


CRD = CrdInfo(
    kind="BanList",
    plural="banlists",
    singular="banlist",
    short_names=("bl", "bans"),
    spec=BanListSpec,
    status=BanListStatus,
    description=(
        "A BanList bans (or, with action allow, lifts bans of) peer ids and networks, and takes "
        "down content (a digest, a name@version, a name or a publisher key), in one fleet or "
        "every fleet of its namespace; the operator pushes the fleet's effective policy to "
        "every node."
    ),
    printer_columns=(
        PrinterColumn("Fleet", "string", ".spec.fleet", "Fleet selected (* = every fleet)"),
        PrinterColumn("Entries", "integer", ".status.entries", "Entries in the list"),
        *converged_columns(),
    ),
)
