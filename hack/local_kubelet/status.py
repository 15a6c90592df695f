"""Build a pod's status from what the kubelet observed of its containers (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from local_kubelet.model import Pod, PodCondition


def rfc3339(moment: datetime) -> str:
    """Kubernetes' timestamp format: UTC, whole seconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Running:
    started_at: datetime


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    started_at: datetime
    finished_at: datetime
    signal: int | None = None
    message: str = ""


State = Waiting | Running | Terminated


@dataclass(frozen=True)
class ContainerView:
    """The kubelet's knowledge of one container at one moment."""

    name: str
    image: str
    state: State
    restart_count: int = 0
    last_state: Terminated | None = None
    ready: bool = False
    started: bool = False
    # Terminated and restartPolicy says it stays so.
    done: bool = False
    pid: int | None = None


def _state_json(state: State) -> dict[str, Any]:
    if isinstance(state, Waiting):
        body: dict[str, Any] = {"reason": state.reason}
        if state.message:
            body["message"] = state.message
        return {"waiting": body}
    if isinstance(state, Running):
        return {"running": {"startedAt": rfc3339(state.started_at)}}
    body = {
        "exitCode": state.exit_code,
        "reason": state.reason,
        "startedAt": rfc3339(state.started_at),
        "finishedAt": rfc3339(state.finished_at),
    }
    if state.signal is not None:
        body["signal"] = state.signal
    if state.message:
        body["message"] = state.message
    return {"terminated": body}


def container_status(view: ContainerView) -> dict[str, Any]:
    """One entry of status.containerStatuses."""
    return {
        "name": view.name,
        "image": view.image,
        "imageID": f"local://{view.image}",
        "containerID": f"local://{view.pid}" if view.pid is not None else "",
        "ready": view.ready,
        "started": view.started,
        "restartCount": view.restart_count,
        "state": _state_json(view.state),
        "lastState": _state_json(view.last_state) if view.last_state else {},
    }


def phase(views: Sequence[ContainerView]) -> str:
    """Pending until every container has run once; terminal once all are done."""
    if views and all(v.done for v in views):
        ok = all(isinstance(v.state, Terminated) and v.state.exit_code == 0 for v in views)
        return "Succeeded" if ok else "Failed"
    never_ran = any(
        isinstance(v.state, Waiting) and v.restart_count == 0 and v.last_state is None
        for v in views
    )
    return "Pending" if never_ran or not views else "Running"


def _condition(
    kind: str,
    ok: bool,
    previous: Mapping[str, PodCondition],
    now: datetime,
    reason: str | None = None,
) -> dict[str, Any]:
    status = "True" if ok else "False"
    old = previous.get(kind)
    since = (
        old.last_transition_time
        if old is not None and old.status == status and old.last_transition_time
        else rfc3339(now)
    )
    # A strategic merge patch merges conditions by type: a reason left out would stay
    # from the last False (ContainersReady True "ContainersNotReady"); null removes it.
    return {
        "type": kind,
        "status": status,
        "lastTransitionTime": since,
        "reason": None if ok else reason,
    }


def conditions(
    pod: Pod,
    views: Sequence[ContainerView],
    *,
    sandbox_ready: bool,
    initialized: bool,
    now: datetime,
    written: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The conditions the kubelet owns; PodScheduled and readiness gates belong to others.

    Ready needs every container ready and every readiness gate's condition
    True on the pod (a gate whose condition is absent counts as False). `written`:
    these conditions as this kubelet last sent them, which win over the pod's. The
    watched pod may not show that write yet, and a transition time taken from it would
    differ from the one sent: every pod flipped between the two, a status write and a
    watch event to every client each time, a dozen while it started (issue 15).
    """
    previous = {c.type: c for c in pod.status.conditions}
    previous.update((c["type"], PodCondition.model_validate(c)) for c in written)
    containers_ready = bool(views) and all(v.ready for v in views)
    succeeded = bool(views) and all(
        v.done and isinstance(v.state, Terminated) and v.state.exit_code == 0 for v in views
    )
    gates_ok = all(
        previous.get(g.condition_type) is not None and previous[g.condition_type].status == "True"
        for g in pod.spec.readiness_gates
    )
    not_ready = "PodCompleted" if succeeded else "ContainersNotReady"
    ready_reason = not_ready if not containers_ready else "ReadinessGatesNotReady"
    return [
        _condition("PodReadyToStartContainers", sandbox_ready, previous, now),
        _condition("Initialized", initialized, previous, now, "ContainersNotInitialized"),
        _condition("ContainersReady", containers_ready, previous, now, not_ready),
        _condition("Ready", containers_ready and gates_ok, previous, now, ready_reason),
    ]


def pod_status(
    pod: Pod,
    views: Sequence[ContainerView],
    *,
    pod_ip: str | None,
    host_ip: str,
    start_time: datetime,
    sandbox_ready: bool,
    initialized: bool,
    now: datetime,
    init_views: Sequence[ContainerView] = (),
    written: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of a strategic-merge patch of pods/status; `written`: the last one sent."""
    body: dict[str, Any] = {
        "phase": phase(views),
        "hostIP": host_ip,
        # `$patch: replace`: podIPs and hostIPs merge by key in a strategic
        # merge patch, which would keep a stale address beside the new one.
        "hostIPs": [{"ip": host_ip}, {"$patch": "replace"}],
        "startTime": rfc3339(start_time),
        "conditions": conditions(
            pod,
            views,
            sandbox_ready=sandbox_ready,
            initialized=initialized,
            now=now,
            written=(written or {}).get("conditions", ()),
        ),
        "containerStatuses": [container_status(v) for v in views],
    }
    if init_views:
        body["initContainerStatuses"] = [container_status(v) for v in init_views]
    if pod_ip:
        body["podIP"] = pod_ip
        body["podIPs"] = [{"ip": pod_ip}, {"$patch": "replace"}]
    return body
