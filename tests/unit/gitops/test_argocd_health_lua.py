"""The Argo CD health scripts under a real Lua 5.1, on hand-made objects: every branch.

(tests/e2e/test_argocd_health.py runs them on objects from a live cluster.)"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import argocd_lua
from tests.support.argocd_lua import FLEET, NODE


def _cond(type_: str, status: str, message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": "R", "message": message}


def _obj(
    *conds: dict[str, Any], generation: int = 2, observed: int | None = 2, **extra: Any
) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": list(conds), **extra.pop("status", {})}
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "metadata": {"generation": generation, **extra.pop("metadata", {})},
        "status": status,
        **extra,
    }


@pytest.mark.parametrize(
    ("obj", "status", "message"),
    [
        ({"metadata": {"generation": 1}}, "Progressing", "Waiting for the operator"),
        (
            _obj(_cond("Ready", "True", "serving and joined"), observed=1),
            "Progressing",
            "Waiting for the operator",
        ),
        (_obj(_cond("Ready", "True", "serving and joined")), "Healthy", "serving and joined"),
        (_obj(_cond("Ready", "False", "waiting: NotJoined")), "Progressing", "waiting: NotJoined"),
        (_obj(), "Progressing", "Waiting for the operator"),
        (
            _obj(
                _cond("Ready", "False"),
                _cond("Degraded", "True", "node container: CrashLoopBackOff"),
            ),
            "Degraded",
            "node container: CrashLoopBackOff",
        ),
        (
            _obj(
                _cond("Ready", "True"),
                spec={"paused": True},
                status={"message": "reconciliation paused"},
            ),
            "Suspended",
            "reconciliation paused",
        ),
        (_obj(_cond("Ready", "True", "ok"), spec={"paused": False}), "Healthy", "ok"),
    ],
)
def test_marketplace_node(obj: dict[str, Any], status: str, message: str) -> None:
    assert argocd_lua.health(NODE, obj) == argocd_lua.Health(status, message)


PAUSED = {"annotations": {"marketplace.p2p.dev/paused": "true"}}


@pytest.mark.parametrize(
    ("obj", "status", "message"),
    [
        ({"metadata": {"generation": 1}}, "Progressing", "Waiting for the operator"),
        (_obj(_cond("Progressing", "False"), _cond("Degraded", "False")), "Healthy", "Settled"),
        (
            _obj(_cond("Progressing", "True", "1/3 nodes updated")),
            "Progressing",
            "1/3 nodes updated",
        ),
        (
            _obj(_cond("Progressing", "False"), metadata=PAUSED, status={"pending": 2}),
            "Suspended",
            "Rollout paused, 2 node(s) to go",
        ),
        (
            _obj(_cond("Degraded", "True", "b: PodFailed"), metadata=PAUSED),
            "Degraded",
            "b: PodFailed",
        ),
        (
            _obj(metadata={"annotations": {"marketplace.p2p.dev/paused": "false"}}),
            "Healthy",
            "Settled",
        ),
    ],
)
def test_marketplace_fleet(obj: dict[str, Any], status: str, message: str) -> None:
    assert argocd_lua.health(FLEET, obj) == argocd_lua.Health(status, message)


def test_the_scripts_are_for_the_node_and_the_fleet() -> None:
    assert set(argocd_lua.scripts()) == {NODE, FLEET}
