"""Argo CD's health checks (docs/gitops/argocd-health.yaml) under a real Lua 5.1, on objects
read from the live cluster in every phase: Progressing, Healthy, Degraded, Suspended.

The fleet's rollout is driven through `kubectl marketplace rollout` (restart, pause,
status, resume) and explained by `kubectl marketplace why`."""

from __future__ import annotations

from typing import Any

from e2e_helpers import OperatorProcess, Plugin, condition, mnode_body, wait_for
from marketplace_operator import k8s
from rollout_helpers import fleet_status, make_fleet

from tests.support import argocd_lua
from tests.support.argocd_lua import FLEET, NODE

CRASHING_IMAGE = "python:3.12"  # runs `python3` with no script: exits at once, forever


def _observed(obj: dict[str, Any] | None) -> bool:
    return bool(
        obj
        and obj.get("status")
        and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
    )


def _health_when(
    kube: k8s.BlockingKube, res: k8s.Resource, namespace: str, name: str, kind: str, status: str
) -> argocd_lua.Health:
    """Poll the live object until the Lua says `status`; what the Lua said."""

    def probe() -> argocd_lua.Health | None:
        obj = kube.get(res, namespace, name)
        if obj is None:
            return None
        got = argocd_lua.health(kind, obj)
        return got if got.status == status else None

    return wait_for(probe, timeout=120, interval=0.1, what=f"{name} to be {status} for Argo CD")


def test_every_health_phase_on_live_objects(
    kube: k8s.BlockingKube, namespace: str, operator: OperatorProcess, plugin: Plugin
) -> None:
    # A node whose container crash-loops: Progressing while it starts, then Degraded.
    kube.create(k8s.MNODES, mnode_body("bad", namespace, fleet="broken", image=CRASHING_IMAGE))
    starting = _health_when(kube, k8s.MNODES, namespace, "bad", NODE, "Progressing")
    assert starting.message  # "Waiting for the operator" or the Ready condition's message
    degraded = _health_when(kube, k8s.MNODES, namespace, "bad", NODE, "Degraded")
    assert "node container" in degraded.message

    names = make_fleet(kube, namespace, "argo", 3, step_timeout=10)
    node = argocd_lua.health(NODE, kube.get(k8s.MNODES, namespace, names[0]) or {})
    assert node == argocd_lua.Health("Healthy", "serving and joined")
    fleet = argocd_lua.health(FLEET, kube.get(k8s.FLEETS, namespace, "argo") or {})
    assert fleet == argocd_lua.Health("Healthy", "Settled")

    # spec.paused on a node: Suspended once the operator has observed it
    kube.patch(k8s.MNODES, namespace, names[0], {"spec": {"paused": True}})
    suspended = _health_when(kube, k8s.MNODES, namespace, names[0], NODE, "Suspended")
    assert suspended.message == "reconciliation paused by spec.paused"
    kube.patch(k8s.MNODES, namespace, names[0], {"spec": {"paused": False}})
    _health_when(kube, k8s.MNODES, namespace, names[0], NODE, "Healthy")

    # a rolling restart through the plugin: Progressing, then Suspended when paused
    assert plugin("rollout", "restart", "argo").returncode == 0
    rolling = _health_when(kube, k8s.FLEETS, namespace, "argo", FLEET, "Progressing")
    assert "nodes updated" in rolling.message
    assert plugin("rollout", "pause", "argo").returncode == 0
    paused = _health_when(kube, k8s.FLEETS, namespace, "argo", FLEET, "Suspended")
    assert paused.message.startswith("Rollout paused, ")
    held = plugin("rollout", "status", "argo", "--timeout", "60s")
    assert held.returncode == 1, held.stdout + held.stderr
    assert "rollout is paused" in held.stdout
    wait_for(
        lambda: fleet_status(kube, namespace, "argo").get("phase") == "Paused",
        timeout=60,
        what="the rollout to stop",
    )
    why = plugin("why", "fleet/argo").stdout
    assert "It is paused (marketplace.p2p.dev/paused=true)" in why, why
    assert "still need a new pod" in why

    # a replacement that never becomes ready stops the rollout: Degraded
    for name in names:
        kube.patch(k8s.MNODES, namespace, name, {"spec": {"image": CRASHING_IMAGE}})
    assert plugin("rollout", "resume", "argo").returncode == 0
    failed = _health_when(kube, k8s.FLEETS, namespace, "argo", FLEET, "Degraded")
    cond = condition(kube.get(k8s.FLEETS, namespace, "argo"), "Degraded")
    assert cond is not None
    assert failed.message == cond["message"]
    assert _observed(kube.get(k8s.FLEETS, namespace, "argo"))
    stopped = plugin("rollout", "status", "argo", "--timeout", "30s")
    assert stopped.returncode == 1
    assert "rollout stopped" in stopped.stdout
    assert plugin("rollout", "pause", "nope").returncode == 1
