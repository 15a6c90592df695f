"""`kubectl marketplace why`: sentences from conditions, the pod, the fleet plan and Events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from marketplace_kubectl import why

from . import objects as o

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _explain(mnode: dict[str, Any], **kw: Any) -> str:
    args: dict[str, Any] = {"pod": o.pod("a"), "fleet": o.fleet(), "fleet_policy": 3, "events": []}
    return "\n".join(why.explain_node(mnode, now=NOW, **{**args, **kw}))


def test_a_healthy_node_is_blocked_by_nothing() -> None:
    text = _explain(o.mnode("a"))
    assert text.splitlines() == [
        "MarketplaceNode a (fleet demo) is Ready.",
        "Nothing blocks it: Ready and joined with 2 peers, on policy v3.",
    ]


def test_conditions_policy_lag_and_an_unobserved_generation() -> None:
    node = o.mnode(
        "a",
        phase="Starting",
        ready="False",
        policy=1,
        generation=3,
        observed=2,
        conditions=[
            o.cond("Ready", "False", "NotJoined", "no peers of its fleet yet"),
            o.cond("Degraded", "True", "ImagePull", "bad image"),
        ],
    )
    text = _explain(node)
    assert "not yet acted on generation 3 (status reflects 2)" in text
    assert "Degraded is True: ImagePull: bad image." in text
    assert "Ready is False: NotJoined: no peers of its fleet yet." in text
    assert "applied policy v1; the fleet is at v3" in text
    assert "Nothing blocks it" not in text


def test_the_pod_missing_crash_looping_or_not_joined() -> None:
    assert "Its pod a does not exist" in _explain(o.mnode("a"), pod=None)
    crashing = o.pod("a", joined="False")
    crashing["status"]["containerStatuses"] = [
        {
            "name": "node",
            "ready": False,
            "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
        }
    ]
    text = _explain(o.mnode("a"), pod=crashing)
    assert "Container node is waiting: CrashLoopBackOff (back-off 40s), restarted 4 times." in text
    assert "readiness gate marketplace.p2p.dev/joined is not True" in text


def test_the_fleet_plan_says_where_the_node_waits_and_why() -> None:
    paused = o.fleet(phase="Paused", paused=True, plan=["x", "a"])
    text = _explain(o.mnode("a"), fleet=paused)
    assert "position 2 of the rollout plan for: restart requested" in text
    assert "rollout resume demo" in text
    blocked = o.fleet(phase="Waiting", plan=["a"], blocked_by="b is unready")
    assert "The next step waits for: b is unready." in _explain(o.mnode("a"), fleet=blocked)
    failed = o.fleet(
        phase="Degraded",
        failures=[{"node": "a", "reason": "PodNotReady", "message": "no ready in 10s"}],
    )
    assert "Its replacement failed (PodNotReady: no ready in 10s)" in _explain(
        o.mnode("a"), fleet=failed
    )
    replacing = o.fleet(
        phase="Progressing",
        steps=[{"node": "a", "phase": "Draining", "reasons": ["image changed"], "phaseSince": "t"}],
    )
    assert "is replacing it (phase Draining since t) because: image changed." in _explain(
        o.mnode("a"), fleet=replacing
    )


def test_only_the_latest_warnings_are_told_newest_first() -> None:
    events = [
        {
            "type": "Warning",
            "reason": f"R{i}",
            "message": f"m{i}",
            "count": i,
            "lastTimestamp": f"2026-01-01T11:5{i}:00Z",
            "involvedObject": {"kind": "MarketplaceNode"},
        }
        for i in range(7)
    ] + [
        {
            "type": "Normal",
            "reason": "Fine",
            "lastTimestamp": "2026-01-01T11:59:59Z",
            "involvedObject": {},
        }
    ]
    lines = [
        line
        for line in _explain(o.mnode("a"), events=events).splitlines()
        if line.startswith("Event")
    ]
    assert len(lines) == why.MAX_EVENTS
    assert lines[0] == "Event on the MarketplaceNode (4m ago x6): R6: m6"
    assert all("Fine" not in line for line in lines)


def test_fleet_explanations() -> None:
    done = why.explain_fleet(o.fleet(), mnodes=[o.mnode("a")], events=[], now=NOW)
    assert done[-1] == "Nothing blocks it: every node is on its desired pod."
    stuck = o.fleet(
        phase="Degraded",
        degraded=True,
        plan=["c"],
        failures=[{"node": "b", "reason": "PodFailed", "message": "exit 1"}],
    )
    text = "\n".join(why.explain_fleet(stuck, mnodes=[], events=[], now=NOW))
    assert "Degraded: PodFailed: b: crash-looping." in text
    assert "Node b's replacement failed (PodFailed): exit 1." in text
    assert "1 node(s) still need a new pod, in this order: c." in text


@pytest.mark.parametrize(
    ("max_unavailable", "shown"),
    [
        (3, "(maxUnavailable 3)"),
        ("10%", "(maxUnavailable 10% = 2 of 20 members)"),  # the deleting 21st is no member
        ("10", "(maxUnavailable '10', which is not valid)"),
    ],
)
def test_fleet_explanation_resolves_a_percentage_max_unavailable(
    max_unavailable: int | str, shown: str
) -> None:
    fleet = o.fleet()
    fleet["spec"]["maxUnavailable"] = max_unavailable
    mnodes = [o.mnode(f"n{i}") for i in range(21)]
    mnodes[0]["metadata"]["deletionTimestamp"] = "2026-01-01T11:00:00Z"
    first = why.explain_fleet(fleet, mnodes=mnodes, events=[], now=NOW)[0]
    assert first.endswith(shown + "."), first
