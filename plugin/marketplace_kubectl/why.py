"""`kubectl marketplace why`: what holds a node or a fleet's rollout back, in words.

Pure: the MarketplaceNode (or MarketplaceFleet), its pod, its fleet, the fleet's current
policy version and the recent Events in; sentences out, most decisive first. Each sentence
names the field or Event it comes from, so a user can check it with `kubectl get`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from marketplace_operator.model.fleet import (
    PAUSED_ANNOTATION,
    MarketplaceFleetSpec,
    resolve_max_unavailable,
)
from marketplace_operator.render import pdb
from pydantic import ValidationError

from marketplace_kubectl import output
from marketplace_kubectl.status import condition, is_paused

Obj = Mapping[str, Any]
MAX_EVENTS = 5
JOINED_GATE = "marketplace.p2p.dev/joined"


def _cond_text(cond: Mapping[str, Any]) -> str:
    reason = cond.get("reason") or "?"
    message = cond.get("message") or ""
    return f"{reason}: {message}" if message else str(reason)


def _events(events: Sequence[Obj], now: datetime) -> list[str]:
    """The latest Warning Events (newest first), as `kubectl events` would sum them up."""

    def when(e: Obj) -> str:
        return str(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or "")

    warnings = sorted((e for e in events if e.get("type") == "Warning"), key=when, reverse=True)
    out = []
    for e in warnings[:MAX_EVENTS]:
        count = e.get("count") or 1
        times = f" x{count}" if count > 1 else ""
        kind = (e.get("involvedObject") or {}).get("kind", "")
        age = output.age(when(e) or None, now)
        out.append(
            f"Event on the {kind} ({age} ago{times}): {e.get('reason')}: {e.get('message', '')}"
        )
    return out


def _pod(name: str, pod: Obj | None) -> list[str]:
    if pod is None:
        return [f"Its pod {name} does not exist (the operator creates it; see its Events)."]
    out = []
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        out.append(f"Its pod {name} is terminating (draining, then deleted).")
    scheduled = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None
    )
    if scheduled and scheduled.get("status") == "False":
        out.append(f"Its pod is not scheduled: {_cond_text(scheduled)}.")
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting:
            out.append(
                f"Container {cs.get('name')} is waiting: {waiting.get('reason')}"
                + (f" ({waiting['message']})" if waiting.get("message") else "")
                + f", restarted {cs.get('restartCount', 0)} times."
            )
        elif not cs.get("ready") and (cs.get("state") or {}).get("running"):
            out.append(f"Container {cs.get('name')} runs but its readiness probe fails.")
    gate = next((c for c in status.get("conditions") or [] if c.get("type") == JOINED_GATE), None)
    if gate is None or gate.get("status") != "True":
        out.append(
            f"The pod's readiness gate {JOINED_GATE} is not True: the operator sets it once "
            "the node reports peers of its fleet and the current policy."
        )
    return out


def _fleet_role(name: str, fleet: Obj | None) -> list[str]:
    if fleet is None:
        return []
    status = fleet.get("status") or {}
    fleet_name = fleet["metadata"]["name"]
    for step in status.get("steps") or []:
        if step.get("node") == name:
            reasons = ", ".join(step.get("reasons") or []) or "a new pod"
            return [
                f"The rollout of fleet {fleet_name} is replacing it (phase {step.get('phase')} "
                f"since {step.get('phaseSince')}) because: {reasons}."
            ]
    for failure in status.get("failures") or []:
        if failure.get("node") == name:
            return [
                f"Its replacement failed ({failure.get('reason')}: {failure.get('message')}); the "
                f"rollout of fleet {fleet_name} stopped there. Fix the spec (e.g. the image) "
                "and the rollout resumes by itself."
            ]
    for position, entry in enumerate(status.get("plan") or [], start=1):
        if entry.get("node") == name:
            reasons = ", ".join(entry.get("reasons") or []) or "a new pod"
            text = f"It waits at position {position} of the rollout plan for: {reasons}."
            if is_paused(fleet):
                text += (
                    f" The rollout is paused ({PAUSED_ANNOTATION}=true on MarketplaceFleet "
                    f"{fleet_name}); resume: kubectl marketplace rollout resume {fleet_name}."
                )
            elif status.get("blockedBy"):
                text += f" The next step waits for: {status['blockedBy']}."
            return [text]
    return []


def explain_node(
    mnode: Obj,
    *,
    pod: Obj | None,
    fleet: Obj | None,
    fleet_policy: int | None,
    events: Sequence[Obj],
    now: datetime,
) -> list[str]:
    """Why MarketplaceNode `mnode` is where it is; the last line says if nothing blocks it."""
    meta = mnode["metadata"]
    name = str(meta["name"])
    spec = mnode.get("spec") or {}
    status = mnode.get("status") or {}
    lines: list[str] = []
    phase = status.get("phase") or "no phase yet"
    lines.append(f"MarketplaceNode {name} (fleet {spec.get('fleet', 'default')}) is {phase}.")
    if meta.get("deletionTimestamp"):
        lines.append("It is being deleted: the operator drains it before removing its finalizer.")
    if spec.get("paused"):
        lines.append("spec.paused is true: the operator leaves its pod and children as they are.")
    observed = status.get("observedGeneration")
    if observed != meta.get("generation"):
        lines.append(
            f"The operator has not yet acted on generation {meta.get('generation')} "
            f"(status reflects {observed}): is the operator running? "
            "(kubectl logs -n marketplace-system deploy/marketplace-operator)"
        )
    blocked = len(lines) > 1
    for type_ in ("Degraded", "Ready", "PolicyApplied"):
        cond = condition(mnode, type_)
        if cond is None:
            continue
        bad = cond.get("status") == ("True" if type_ == "Degraded" else "False")
        if bad:
            blocked = True
            lines.append(f"{type_} is {cond.get('status')}: {_cond_text(cond)}.")
    applied = status.get("policyVersion")
    if fleet_policy is not None and (applied is None or applied < fleet_policy):
        blocked = True
        lines.append(
            f"It has applied policy v{applied if applied is not None else '-'}; "
            f"the fleet is at v{fleet_policy}."
        )
    pod_lines = _pod(str(status.get("podName") or name), pod)
    role = _fleet_role(name, fleet)
    event_lines = _events(events, now)
    blocked = blocked or bool(pod_lines) or bool(role)
    lines += pod_lines + role + event_lines
    if not blocked:
        lines.append(
            f"Nothing blocks it: Ready and joined with {status.get('peers', 0)} peers, "
            f"on policy v{applied}."
        )
    return lines


def _budget(spec: Obj, mnodes: Sequence[Obj]) -> str:
    """maxUnavailable as written and, for a percentage, the count it allows now (of the
    members the operator counts: the fleet's nodes not being deleted)."""
    raw = spec.get("maxUnavailable", 1)
    try:
        value = MarketplaceFleetSpec.model_validate({"maxUnavailable": raw}).max_unavailable
    except ValidationError:
        return f"{raw!r}, which is not valid"
    if isinstance(value, int):
        return str(value)
    members = pdb.members(mnodes)
    return f"{value} = {resolve_max_unavailable(value, members)} of {members:,} members"


def explain_fleet(
    fleet: Obj, *, mnodes: Sequence[Obj], events: Sequence[Obj], now: datetime
) -> list[str]:
    """Why the fleet's rollout is where it is."""
    name = fleet["metadata"]["name"]
    status = fleet.get("status") or {}
    spec = fleet.get("spec") or {}
    lines = [
        f"MarketplaceFleet {name}: rollout {status.get('phase') or 'not started'}, "
        f"{status.get('updated', 0)}/{status.get('nodes', len(mnodes))} nodes updated, "
        f"{status.get('unavailable', 0)} unavailable (maxUnavailable {_budget(spec, mnodes)})."
    ]
    if is_paused(fleet):
        lines.append(
            f"It is paused ({PAUSED_ANNOTATION}=true); resume: "
            f"kubectl marketplace rollout resume {name}."
        )
    degraded = condition(fleet, "Degraded")
    if degraded and degraded.get("status") == "True":
        lines.append(f"Degraded: {_cond_text(degraded)}.")
    for failure in status.get("failures") or []:
        lines.append(
            f"Node {failure.get('node')}'s replacement failed ({failure.get('reason')}): "
            f"{failure.get('message')}. The rollout waits until it is fixed."
        )
    for step in status.get("steps") or []:
        lines.append(f"Replacing {step.get('node')} (phase {step.get('phase')}).")
    if status.get("blockedBy"):
        lines.append(f"The next step waits for: {status['blockedBy']}.")
    if status.get("pending"):
        order = ", ".join(e.get("node", "?") for e in status.get("plan") or [])
        lines.append(f"{status['pending']} node(s) still need a new pod, in this order: {order}.")
    lines += _events(events, now)
    if len(lines) == 1:
        lines.append("Nothing blocks it: every node is on its desired pod.")
    return lines
