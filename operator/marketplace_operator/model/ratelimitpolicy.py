"""The `RateLimitPolicy` custom resource: per-peer and global limits and ban escalation.

Every field is optional: a policy sets only what it cares about, and the
effective limits of a fleet are merged field by field from every policy that
selects it (precedence in `policy.effective`, documented in docs/policy.md);
a field no policy sets keeps the node's default. Bounds match the admin wire
models (`marketplace_protocol.admin`), so a value the API server accepts is
one the node accepts.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from marketplace_operator.model.banlist import (
    ALL_FLEETS,
    FLEET_PATTERN,
    CrdModel,
    PolicyObjectStatus,
    converged_columns,
)
from marketplace_operator.model.common import (
    FLEET_NAME_MAX,
    CrdInfo,
    PrinterColumn,
    cel,
    validations,
)

MAX_SECONDS = 31_536_000.0


class LimitSpec(CrdModel):
    """A token bucket: sustained `rate` requests per second, bursts of up to `burst`."""

    rate: float = Field(gt=0, le=1_000_000, description="Sustained requests per second.")
    burst: int = Field(ge=1, le=1_000_000, description="Requests allowed at once.")


class PerPeerSpec(CrdModel):
    """Per-peer limits by operation; an operation left out keeps the lower-precedence value."""

    search: LimitSpec | None = Field(default=None, description="Keyword/tag/category searches.")
    publish: LimitSpec | None = Field(default=None, description="Package announcements.")
    fetch: LimitSpec | None = Field(default=None, description="Content downloads.")
    gossip: LimitSpec | None = Field(default=None, description="Gossip messages.")
    subscribe: LimitSpec | None = Field(default=None, description="Subscriptions.")


class EscalationSpec(CrdModel):
    """How violations within a window turn into bans that grow by a factor up to a maximum."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.firstBanSeconds) || !has(self.maxBanSeconds)"
                " || self.firstBanSeconds <= self.maxBanSeconds",
                "firstBanSeconds must not exceed maxBanSeconds",
            )
        )
    )

    threshold: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Violations per window that ban a peer."
    )
    window_seconds: float | None = Field(
        default=None, gt=0, le=86_400, alias="windowSeconds", description="Counting window."
    )
    first_ban_seconds: float | None = Field(
        default=None, gt=0, le=MAX_SECONDS, alias="firstBanSeconds", description="First ban."
    )
    backoff_factor: float | None = Field(
        default=None, ge=1, le=100, alias="backoffFactor", description="Growth per repeat ban."
    )
    max_ban_seconds: float | None = Field(
        default=None, gt=0, le=MAX_SECONDS, alias="maxBanSeconds", description="Longest ban."
    )
    tarpit_seconds: float | None = Field(
        default=None,
        ge=0,
        le=30,
        alias="tarpitSeconds",
        description=(
            "Seconds a banned peer waits for its refusal, which slows a banned client's retries;"
            " 0 answers at once. Node default 1."
        ),
    )

    @model_validator(mode="after")
    def _first_within_max(self) -> EscalationSpec:
        first, most = self.first_ban_seconds, self.max_ban_seconds
        if first is not None and most is not None and first > most:
            raise ValueError("firstBanSeconds must not exceed maxBanSeconds")
        return self


class RateLimitPolicySpec(CrdModel):
    """Limits for one fleet or every fleet of the namespace, with a priority."""

    fleet: str = Field(
        default=ALL_FLEETS,
        max_length=FLEET_NAME_MAX,
        pattern=FLEET_PATTERN,
        description='Fleet the limits apply to; "*" (the default) means every fleet here.',
    )
    priority: int = Field(
        default=0,
        ge=-1_000,
        le=1_000,
        description="Higher wins, field by field; ties: a named fleet beats *, then name order.",
    )
    per_peer: PerPeerSpec = Field(
        default_factory=PerPeerSpec, alias="perPeer", description="Per-peer limits."
    )
    per_publisher: LimitSpec | None = Field(
        default=None,
        alias="perPublisher",
        description=(
            "Publishes and owner records per author key on each node (checked once the "
            "author's signature is verified), on top of perPeer.publish per address."
        ),
    )
    global_: LimitSpec | None = Field(
        default=None, alias="global", description="Limit over all peers together."
    )
    max_pending_queries: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        alias="maxPendingQueries",
        description="Cap on queries in flight.",
    )
    escalation: EscalationSpec = Field(
        default_factory=EscalationSpec, description="From violations to bans."
    )

    def selects(self, fleet: str) -> bool:
        return self.fleet in (ALL_FLEETS, fleet)

    def fields_set(self) -> list[str]:
        """Names of the limits this policy sets, for the printer column."""
        names = [op for op, value in self.per_peer if value is not None]
        if self.per_publisher is not None:
            names.append("perPublisher")
        if self.global_ is not None:
            names.append("global")
        if self.max_pending_queries is not None:
            names.append("maxPendingQueries")
        if any(value is not None for _, value in self.escalation):
            names.append("escalation")
        return names


class RateLimitPolicy(CrdModel):
    """A RateLimitPolicy as the operator reads it: identity, spec and last status."""

    namespace: str
    name: str
    uid: str = ""
    generation: int = 0
    spec: RateLimitPolicySpec = Field(default_factory=RateLimitPolicySpec)
    status: dict[str, Any] = Field(default_factory=dict)


class RateLimitPolicyStatus(PolicyObjectStatus):
    """RateLimitPolicy status: convergence plus a summary of what it sets."""

    limits: str | None = Field(
        default=None, max_length=256, description="Limits this policy sets, e.g. search,global."
    )


CRD = CrdInfo(
    kind="RateLimitPolicy",
    plural="ratelimitpolicies",
    singular="ratelimitpolicy",
    short_names=("rlp",),
    spec=RateLimitPolicySpec,
    status=RateLimitPolicyStatus,
    description=(
        "A RateLimitPolicy sets per-peer, per-publisher and global rate limits, the "
        "pending-query cap and the escalation from violations to bans for one fleet or every "
        "fleet of its namespace; several policies merge field by field by priority."
    ),
    printer_columns=(
        PrinterColumn("Fleet", "string", ".spec.fleet", "Fleet selected (* = every fleet)"),
        PrinterColumn("Priority", "integer", ".spec.priority", "Higher wins, field by field"),
        PrinterColumn("Limits", "string", ".status.limits", "Limits this policy sets"),
        *converged_columns(),
    ),
)
