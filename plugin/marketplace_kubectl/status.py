"""`kubectl marketplace status`: one row per node, from the objects the operator writes.

Pure: MarketplaceNodes, MarketplaceFleets and each fleet's current policy version in,
rows out. A node's rollout column comes from its fleet's plan, steps and failures; its
lag is how many policy versions it is behind the fleet's ConfigMap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from marketplace_operator.model.fleet import PAUSED_ANNOTATION

from marketplace_kubectl import output

Obj = Mapping[str, Any]


def condition(obj: Obj | None, type_: str) -> Mapping[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def fleet_of(mnode: Obj) -> str:
    return str((mnode.get("spec") or {}).get("fleet") or "default")


def is_paused(fleet: Obj | None) -> bool:
    annotations = ((fleet or {}).get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(PAUSED_ANNOTATION, "")).lower() == "true"


def rollout_step(name: str, fleet: Obj | None) -> str:
    """Where the node is in its fleet's rollout: replacing, failed, queued, or `-`."""
    status = (fleet or {}).get("status") or {}
    for step in status.get("steps") or []:
        if step.get("node") == name:
            return f"replacing ({step.get('phase', '?')})"
    for failure in status.get("failures") or []:
        if failure.get("node") == name:
            return f"failed ({failure.get('reason', '?')})"
    for position, entry in enumerate(status.get("plan") or [], start=1):
        if entry.get("node") == name:
            return f"{'paused' if is_paused(fleet) else 'queued'} #{position}"
    return "-"


def replication(fleet: Obj | None) -> str | None:
    """The fleet's replication health, where its status reports one (else None)."""
    status = (fleet or {}).get("status") or {}
    found = status.get("replication")
    if isinstance(found, Mapping):
        under = found.get("underReplicated")
        if under is not None:
            return "healthy" if not under else f"{under} under-replicated"
        return str(found.get("phase") or found.get("state") or "") or None
    under = status.get("underReplicated")
    if under is None:
        return None
    return "healthy" if not under else f"{under} under-replicated"


@dataclass(frozen=True)
class NodeRow:
    fleet: str
    name: str
    phase: str
    ready: str
    peers: int | None
    policy: int | None
    lag: int | None
    rollout: str
    replication: str | None
    age: str
    pod_ip: str
    peer_id: str
    message: str


def _lag(applied: int | None, current: int | None) -> int | None:
    """Policy versions the node is behind its fleet's ConfigMap; None when unknown."""
    if applied is None or current is None:
        return None
    return max(current - applied, 0)


def node_row(mnode: Obj, fleet: Obj | None, current_policy: int | None, now: datetime) -> NodeRow:
    status = mnode.get("status") or {}
    ready = condition(mnode, "Ready")
    applied = status.get("policyVersion")
    name = str(mnode["metadata"]["name"])
    return NodeRow(
        fleet=fleet_of(mnode),
        name=name,
        phase=str(status.get("phase") or "Unknown"),
        ready=str(ready.get("status")) if ready else "Unknown",
        peers=status.get("peers"),
        policy=applied,
        lag=_lag(applied, current_policy),
        rollout=rollout_step(name, fleet),
        replication=replication(fleet),
        age=output.age(mnode["metadata"].get("creationTimestamp"), now),
        pod_ip=str(status.get("podIP") or "-"),
        peer_id=str(status.get("peerId") or "-"),
        message=str(status.get("message") or ""),
    )


@dataclass(frozen=True)
class FleetView:
    name: str
    rollout: str
    policy: int | None
    blocked_by: str
    replication: str | None
    nodes: tuple[NodeRow, ...]


def fleets(
    mnodes: Sequence[Obj],
    fleet_objects: Sequence[Obj],
    policy_versions: Mapping[str, int | None],
    now: datetime,
    *,
    only: str | None = None,
) -> list[FleetView]:
    """Every fleet with nodes (or the one named `only`), nodes sorted by name."""
    by_name = {str(f["metadata"]["name"]): f for f in fleet_objects}
    names = sorted({fleet_of(m) for m in mnodes} | ({only} if only else set()))
    out = []
    for name in names:
        if only is not None and name != only:
            continue
        fleet = by_name.get(name)
        current = policy_versions.get(name)
        members = sorted(
            (m for m in mnodes if fleet_of(m) == name), key=lambda m: str(m["metadata"]["name"])
        )
        status = (fleet or {}).get("status") or {}
        out.append(
            FleetView(
                name=name,
                rollout=str(status.get("phase") or "Unknown"),
                policy=current,
                blocked_by=str(status.get("blockedBy") or ""),
                replication=replication(fleet),
                nodes=tuple(node_row(m, fleet, current, now) for m in members),
            )
        )
    return out


_COLUMNS = ("fleet", "name", "phase", "ready", "peers", "policy", "lag", "rollout")
_WIDE = ("pod_ip", "peer_id", "message")


def render_table(views: Sequence[FleetView], *, wide: bool) -> str:
    """The node table; REPLICATION appears when some fleet reports it, AGE as kubectl."""
    with_replication = any(v.replication is not None for v in views)
    columns = [*_COLUMNS, *(("replication",) if with_replication else ()), "age"]
    if wide:
        columns += _WIDE
    rows = [
        ["-" if (v := asdict(row)[c]) is None else str(v) for c in columns]
        for view in views
        for row in view.nodes
    ]
    headers = [c.replace("_", "-") for c in columns]
    return output.table(headers, rows)


def render_summary(views: Sequence[FleetView]) -> str:
    """One line per fleet under the table: rollout phase, policy, what blocks."""
    lines = []
    for v in views:
        policy = "?" if v.policy is None else str(v.policy)
        line = f"fleet {v.name}: rollout {v.rollout}, policy v{policy}"
        if v.blocked_by:
            line += f", waiting for: {v.blocked_by}"
        if v.replication is not None:
            line += f", replication {v.replication}"
        lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")


def as_data(views: Sequence[FleetView]) -> dict[str, Any]:
    """`-o json|yaml`: fleets with their nodes, field names in camelCase as the API."""
    names = {"pod_ip": "podIP", "peer_id": "peerId"}
    return {
        "fleets": [
            {
                "name": v.name,
                "rollout": v.rollout,
                "policyVersion": v.policy,
                "blockedBy": v.blocked_by or None,
                "replication": v.replication,
                "nodes": [{names.get(k, k): val for k, val in asdict(n).items()} for n in v.nodes],
            }
            for v in views
        ]
    }
