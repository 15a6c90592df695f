"""Small API objects for the plugin's unit tests, shaped as the API server returns them."""

from __future__ import annotations

from typing import Any

NOW_TEXT = "2026-01-01T12:00:00Z"


def cond(type_: str, status: str, reason: str = "AsExpected", message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": NOW_TEXT,
    }


def mnode(
    name: str,
    *,
    fleet: str = "demo",
    phase: str = "Ready",
    ready: str = "True",
    policy: int | None = 3,
    peers: int = 2,
    generation: int = 1,
    observed: int = 1,
    restarted_at: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "ns",
        "generation": generation,
        "creationTimestamp": "2026-01-01T11:00:00Z",
    }
    if restarted_at is not None:
        meta["annotations"] = {"marketplace.p2p.dev/restartedAt": restarted_at}
    status: dict[str, Any] = {
        "phase": phase,
        "observedGeneration": observed,
        "peers": peers,
        "podName": name,
        "podIP": "10.0.0.1",
        "peerId": "mpabcdefgh",
        "message": "serving and joined" if ready == "True" else "waiting",
        "conditions": conditions if conditions is not None else [cond("Ready", ready)],
    }
    if policy is not None:
        status["policyVersion"] = policy
    return {"metadata": meta, "spec": {"fleet": fleet}, "status": status}


def fleet(
    name: str = "demo",
    *,
    phase: str = "Complete",
    paused: bool = False,
    steps: list[dict[str, Any]] | None = None,
    plan: list[str] | None = None,
    failures: list[dict[str, Any]] | None = None,
    blocked_by: str | None = None,
    degraded: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "generation": 1}
    if paused:
        meta["annotations"] = {"marketplace.p2p.dev/paused": "true"}
    plan = plan or []
    return {
        "metadata": meta,
        "spec": {"maxUnavailable": 1},
        "status": {
            "phase": phase,
            "observedGeneration": 1,
            "steps": steps or [],
            "plan": [{"node": n, "reasons": ["restart requested"]} for n in plan],
            "pending": len(plan) + len(steps or []),
            "failures": failures or [],
            "blockedBy": blocked_by,
            "conditions": [
                cond(
                    "Degraded",
                    "True" if degraded else "False",
                    "PodFailed" if degraded else "AsExpected",
                    "b: crash-looping" if degraded else "",
                )
            ],
        },
    }


def pod(name: str, *, restarted_at: str | None = None, joined: str = "True") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns"}
    if restarted_at is not None:
        meta["annotations"] = {"marketplace.p2p.dev/restartedAt": restarted_at}
    return {
        "metadata": meta,
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "marketplace.p2p.dev/joined", "status": joined},
            ],
            "containerStatuses": [
                {"name": "node", "ready": True, "restartCount": 0, "state": {"running": {}}}
            ],
        },
    }
