"""The MarketplaceFleet status for a planner decision: the record, the plan, two conditions,
and the fleet's under-replicated packages as its nodes report them.

Pure. The handler writes it before acting (the record is what makes a killed operator
resume exactly), and only when it differs from what is in the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from marketplace_operator.model.common import Condition, ConditionStatus, merge_condition, rfc3339
from marketplace_operator.model.fleet import MarketplaceFleetStatus, RolloutPhase
from marketplace_operator.rollout.planner import Decision

_PROGRESSING = {
    RolloutPhase.PROGRESSING: (ConditionStatus.TRUE, "RollingOut"),
    RolloutPhase.WAITING: (ConditionStatus.TRUE, "WaitingForBudget"),
    RolloutPhase.PAUSED: (ConditionStatus.FALSE, "Paused"),
    RolloutPhase.DEGRADED: (ConditionStatus.FALSE, "StepFailed"),
    RolloutPhase.COMPLETE: (ConditionStatus.FALSE, "RolloutComplete"),
}


def _progress_message(decision: Decision) -> str:
    steps = ", ".join(f"{s.node} ({s.phase})" for s in decision.record.steps)
    parts = [f"{decision.updated}/{decision.nodes} nodes updated"]
    if steps:
        parts.append(f"replacing {steps}")
    if decision.pending:
        parts.append(f"{decision.pending} to go")
    if decision.blocked_by:
        parts.append(f"next step waits for: {decision.blocked_by}")
    return "; ".join(parts)[:4096]


def under_replicated(mnodes: Iterable[Mapping[str, Any]]) -> int | None:
    """The most packages below the factor any node reports (None: no node reported yet).

    The most, not the sum: every node counts every package it knows, so the same package
    lacking a copy is counted by each node; a node that lags behind reports fewer."""
    counts = [
        int(found)
        for m in mnodes
        if isinstance(found := (m.get("status") or {}).get("underReplicated"), int)
    ]
    return max(counts, default=None)


def build(
    previous: MarketplaceFleetStatus,
    decision: Decision,
    *,
    now: datetime,
    generation: int | None,
    under: int | None = None,
) -> MarketplaceFleetStatus:
    """The whole status; conditions keep their transition time unless their status flips."""
    stamp = rfc3339(now)
    status, reason = _PROGRESSING[decision.phase]
    conditions = merge_condition(
        list(previous.conditions),
        Condition(
            type="Progressing",
            status=status,
            reason=reason,
            message=_progress_message(decision),
            last_transition_time=stamp,
            observed_generation=generation,
        ),
    )
    failures = decision.record.failures
    degraded = Condition(
        type="Degraded",
        status=ConditionStatus.TRUE if failures else ConditionStatus.FALSE,
        reason=failures[0].reason if failures else "AsExpected",
        message="; ".join(f"{f.node}: {f.message}" for f in failures)[:4096],
        last_transition_time=stamp,
        observed_generation=generation,
    )
    conditions = merge_condition(conditions, degraded)
    return MarketplaceFleetStatus(
        observed_generation=generation,
        phase=decision.phase,
        nodes=decision.nodes,
        updated=decision.updated,
        unavailable=decision.unavailable,
        current=", ".join(s.node for s in decision.record.steps)[:253] or None,
        blocked_by=(decision.blocked_by or "")[:1024] or None,
        steps=list(decision.record.steps),
        failures=list(failures),
        plan=list(decision.plan),
        pending=decision.pending,
        under_replicated=under,
        conditions=conditions,
    )


def as_patch(status: MarketplaceFleetStatus) -> dict[str, object]:
    """A merge patch that replaces the whole status (lists are replaced, absent keys nulled)."""
    body = status.model_dump(mode="json", by_alias=True)
    return {"status": body}
