"""Status of BanLists and RateLimitPolicies: a pure builder from what the worker observed.

`Ready` says whether the object is part of its fleets' effective policy (False
with the reason when it cannot be applied); `PolicyConverged` whether every
node of those fleets has applied that policy, naming the lagging ones
(capped). The worker writes the result only when it differs from what it
wrote last (one status writer, patch on difference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marketplace_operator.model.banlist import (
    MAX_FLEETS_LISTED,
    MAX_LAGGING_LISTED,
    FleetConvergence,
    PolicyConditionType,
)
from marketplace_operator.model.common import Condition, ConditionStatus, merge_condition, rfc3339


@dataclass(frozen=True)
class FleetView:
    """One fleet as the worker last saw it: its policy version and which nodes applied it."""

    fleet: str
    version: int | None
    nodes: tuple[str, ...]
    converged: tuple[str, ...]
    includes: bool = True  # the fleet's policy was computed from this object's spec
    frozen: str | None = None  # why the fleet keeps its last good policy, if it does

    @property
    def lagging(self) -> list[str]:
        return sorted(set(self.nodes) - set(self.converged))


def _condition(
    type_: PolicyConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime,
) -> Condition:
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:4096],
        last_transition_time=rfc3339(now),
        observed_generation=generation,
    )


def _ready(problem: str | None, fleets: Sequence[FleetView]) -> tuple[ConditionStatus, str, str]:
    if problem is not None:
        return ConditionStatus.FALSE, "CannotApply", problem
    if not fleets:
        return ConditionStatus.TRUE, "NoNodes", "no node of a selected fleet exists yet"
    blocked = [f for f in fleets if not f.includes and f.frozen is not None]
    if blocked:
        why = "; ".join(f.frozen or "" for f in blocked)
        return (
            ConditionStatus.FALSE,
            "FleetPolicyFrozen",
            f"not enforced: this object's entries are not in the policy of "
            f"{', '.join(f.fleet for f in blocked)}, which keeps its last good version "
            f"until another object is fixed ({why})",
        )
    versions = ", ".join(f"{f.fleet}: v{f.version}" for f in fleets if f.version is not None)
    if not versions or any(not f.includes for f in fleets):
        return ConditionStatus.UNKNOWN, "Pending", "the fleet policy is not computed yet"
    return ConditionStatus.TRUE, "Included", f"in fleet policy ({versions})"


def _converged(
    problem: str | None, fleets: Sequence[FleetView]
) -> tuple[ConditionStatus, str, str]:
    if problem is not None:
        return ConditionStatus.FALSE, "CannotApply", "nothing was pushed: the object cannot apply"
    if any(not f.includes and f.frozen is not None for f in fleets):
        return ConditionStatus.FALSE, "FleetPolicyFrozen", "this object's entries were not pushed"
    lagging = sorted(f"{n}" for f in fleets for n in f.lagging)
    total = sum(len(f.nodes) for f in fleets)
    if not lagging:
        return ConditionStatus.TRUE, "Converged", f"all {total} nodes applied the fleet policy"
    shown = ", ".join(lagging[:MAX_LAGGING_LISTED])
    more = (
        f" and {len(lagging) - MAX_LAGGING_LISTED} more"
        if len(lagging) > MAX_LAGGING_LISTED
        else ""
    )
    return (
        ConditionStatus.FALSE,
        "Lagging",
        f"{total - len(lagging)}/{total} nodes applied the fleet policy; lagging: {shown}{more}",
    )


def object_status(
    *,
    generation: int,
    fleets: Sequence[FleetView],
    problem: str | None,
    previous_conditions: Sequence[Condition],
    now: datetime,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole status of one BanList or RateLimitPolicy, as the JSON to patch."""
    fleets = sorted(fleets, key=lambda f: f.fleet)
    conditions = list(previous_conditions)
    for type_, (state, reason, message) in (
        (PolicyConditionType.READY, _ready(problem, fleets)),
        (PolicyConditionType.POLICY_CONVERGED, _converged(problem, fleets)),
    ):
        new = _condition(type_, state, reason, message, generation=generation, now=now)
        conditions = merge_condition(conditions, new)
    versions = [f.version for f in fleets if f.version is not None]
    nodes = sum(len(f.nodes) for f in fleets)
    converged = sum(len(f.converged) for f in fleets)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "fleetPolicyVersion": min(versions) if versions else None,
        "convergedNodes": f"{converged}/{nodes}",
        "fleets": [
            FleetConvergence(
                fleet=f.fleet,
                policy_version=f.version or 0,
                converged=len(f.converged),
                nodes=len(f.nodes),
                lagging=f.lagging[:MAX_LAGGING_LISTED],
            ).model_dump(by_alias=True)
            for f in fleets[:MAX_FLEETS_LISTED]
        ],
        "conditions": [c.model_dump(by_alias=True, exclude_none=True) for c in conditions],
        **(extra or {}),
    }
    return status
