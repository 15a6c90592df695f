"""Typed views of the observed objects the decisions read (parsed from raw API dicts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from marketplace_operator.model.fleet import LEAVING_ANNOTATION
from marketplace_operator.render import names

# Waiting reasons on the way to running; any other (CrashLoopBackOff, ErrImagePull,
# ImagePullBackOff, CreateContainerConfigError, a local kubelet's ImageNotMapped …)
# means the container will not run without a change.
STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})
CRASH_RESTARTS = 3


@dataclass(frozen=True)
class PodView:
    """What the decisions need from a Pod."""

    name: str
    uid: str
    phase: str
    ip: str | None
    template_hash: str | None
    deleting: bool
    ready: bool
    containers_ready: bool
    joined: bool
    restarts: int
    waiting_reason: str | None
    waiting_message: str | None
    controller_uid: str | None
    labels: dict[str, str] = field(default_factory=dict)
    # Every container passed its startup probe: the node process answers. Before that, a
    # policy push can only be refused (the node reads its policy from the ConfigMap first).
    started: bool = True
    node_name: str | None = None  # the Node it is bound to, once scheduled
    host_ip: str | None = None  # that Node's address (a NodePort is reached there)
    # The scheduler's word when it cannot place the pod (PodScheduled False, Unschedulable).
    unschedulable: str | None = None
    # The private listener's port; None for a pod of the one-port layout (admin on p2p).
    private_port: int | None = None
    # Marked by the fleet's rollout: being taken out of service (its gate stays off).
    leaving: bool = False

    def admin_port(self, public_port: int) -> int:
        """Where the pod's admin API listens: its private port, else (one-port layout,
        a node image before the split) the public one."""
        return self.private_port if self.private_port is not None else public_port

    @property
    def stuck_reason(self) -> str | None:
        """Why the node cannot run, if it cannot: a stuck waiting state or a crash loop."""
        if self.waiting_reason is not None and self.waiting_reason not in STARTING_REASONS:
            return self.waiting_reason
        if self.restarts >= CRASH_RESTARTS and not self.containers_ready:
            return "CrashLoopBackOff"
        return None


def controller_uid(obj: dict[str, Any]) -> str | None:
    for owner in obj.get("metadata", {}).get("ownerReferences") or []:
        if owner.get("controller"):
            return str(owner.get("uid"))
    return None


def _condition(status: dict[str, Any], type_: str) -> bool:
    return any(
        c.get("type") == type_ and c.get("status") == "True" for c in status.get("conditions") or []
    )


def _unschedulable(status: dict[str, Any]) -> str | None:
    for c in status.get("conditions") or []:
        if (c.get("type"), c.get("status"), c.get("reason")) == (
            "PodScheduled", "False", "Unschedulable",
        ):  # fmt: skip
            return str(c.get("message") or "no Node fits the pod")
    return None


def pod_view(pod: dict[str, Any]) -> PodView:
    meta = pod.get("metadata", {})
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    waiting: dict[str, Any] = next(
        (c["state"]["waiting"] for c in containers if (c.get("state") or {}).get("waiting")),
        {},
    )
    return PodView(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        phase=status.get("phase", "Pending"),
        ip=status.get("podIP") or None,
        template_hash=(meta.get("annotations") or {}).get(names.TEMPLATE_HASH_ANNOTATION),
        deleting=meta.get("deletionTimestamp") is not None,
        ready=_condition(status, "Ready"),
        containers_ready=_condition(status, "ContainersReady"),
        joined=_condition(status, names.JOINED_CONDITION),
        restarts=sum(int(c.get("restartCount", 0)) for c in containers),
        waiting_reason=waiting.get("reason"),
        waiting_message=waiting.get("message"),
        controller_uid=controller_uid(pod),
        labels=dict(meta.get("labels") or {}),
        started=bool(containers) and all(c.get("started") for c in containers),
        node_name=(pod.get("spec") or {}).get("nodeName") or None,
        host_ip=status.get("hostIP") or None,
        unschedulable=_unschedulable(status),
        private_port=_private_port(meta),
        leaving=LEAVING_ANNOTATION in (meta.get("annotations") or {}),
    )


_CONDITION_KEYS = ("type", "status", "reason", "message")


def pod_status_kept(status: dict[str, Any]) -> dict[str, Any]:
    """The part of a Pod's status that `pod_view` (and the rollout's podIP) reads, as new
    small objects: what the operator keeps of each of its pods (kopf's index).

    Kept as the raw status (a shallow copy), each pod held the event's conditions with
    their timestamps and its container statuses with image names and ids, parts of the
    parsed watch event that also pinned the memory around them: at 1,000 nodes about
    6 KiB a pod of the watch events' retained 50 (issue 15). `pod_view` of the result
    equals `pod_view` of the whole status (unit-tested)."""
    kept: dict[str, Any] = {
        k: status[k] for k in ("phase", "podIP", "hostIP") if status.get(k) is not None
    }
    if status.get("conditions"):
        kept["conditions"] = [
            {k: c[k] for k in _CONDITION_KEYS if c.get(k) is not None} for c in status["conditions"]
        ]
    if status.get("containerStatuses"):
        kept["containerStatuses"] = [_container_kept(c) for c in status["containerStatuses"]]
    return kept


def _container_kept(container: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {"restartCount": container.get("restartCount", 0)}
    if container.get("started") is not None:
        kept["started"] = container["started"]
    waiting = (container.get("state") or {}).get("waiting")
    if waiting:
        kept["state"] = {"waiting": {k: waiting[k] for k in ("reason", "message") if k in waiting}}
    return kept


def _private_port(meta: dict[str, Any]) -> int | None:
    value = (meta.get("annotations") or {}).get(names.PRIVATE_PORT_ANNOTATION, "")
    return int(value) if value.isdigit() else None
