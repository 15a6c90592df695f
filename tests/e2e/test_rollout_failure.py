"""A replacement that crash-loops stops the rollout with Degraded; fixing the spec resumes it."""

from __future__ import annotations

import time

import loadgen
from e2e_helpers import OperatorProcess, wait_for
from marketplace_operator import k8s
from rollout_helpers import (
    events,
    fleet_condition,
    fleet_status,
    make_fleet,
    pod_uids,
)

CRASHING_IMAGE = "python:3.12"  # runs `python3` with no script: exits at once, forever


def test_crash_looping_replacement_halts_cleanly_and_a_fix_resumes(
    kube: k8s.BlockingKube, kubeconfig: str, namespace: str, operator: OperatorProcess
) -> None:
    names = make_fleet(kube, namespace, "crash", 3, step_timeout=10)
    before = pod_uids(kube, namespace, names)

    with loadgen.FleetWatch(kubeconfig, namespace, "crash", names) as watch:
        started = time.monotonic()
        for name in names:
            kube.patch(k8s.MNODES, namespace, name, {"spec": {"image": CRASHING_IMAGE}})

        def degraded() -> dict[str, object] | None:
            cond = fleet_condition(kube, namespace, "crash", "Degraded")
            return cond if cond is not None and cond["status"] == "True" else None

        cond = wait_for(degraded, timeout=120, what="the fleet to report Degraded")
        status = fleet_status(kube, namespace, "crash")
        assert status["phase"] == "Degraded"
        (failure,) = status["failures"]
        assert failure["node"] == names[0]
        assert failure["reason"] in {"PodFailed", "PodNotReady"}, failure
        assert names[0] in str(cond["message"])

        def step_failed() -> list[dict[str, object]]:
            return [
                e
                for e in events(kube, namespace, "MarketplaceFleet", "crash")
                if e["reason"] == "RolloutStepFailed"
            ]

        # Events go through kopf's queue after the status write: seen a moment later.
        wait_for(step_failed, timeout=15, what="the RolloutStepFailed Event")
        time.sleep(8)  # no retry loop, no cascade: the others keep their pods and serve
        warnings = step_failed()
        assert len(warnings) == 1  # once, not again in those 8 s
        assert warnings[0]["type"] == "Warning"
        assert names[0] in str(warnings[0]["message"])
        now = pod_uids(kube, namespace, names)
        assert now[names[0]] != before[names[0]]
        assert all(now[n] == before[n] for n in names[1:])
        assert fleet_status(kube, namespace, "crash")["phase"] == "Degraded"
        assert len(watch.uids_seen[names[0]]) == 2  # replaced once, never again
        assert [w for w in watch.most_unavailable(since=started).unavailable] == [names[0]]

        for name in names:  # the fix: back to the operator's default image
            kube.patch(k8s.MNODES, namespace, name, {"spec": {"image": ""}})
        wait_for(
            lambda: (
                fleet_status(kube, namespace, "crash").get("phase") == "Complete"
                and fleet_status(kube, namespace, "crash").get("updated") == 3
            ),
            timeout=120,
            what="the rollout to resume and complete",
        )
    after = pod_uids(kube, namespace, names)
    assert after[names[0]] not in (before[names[0]], now[names[0]])
    assert all(after[n] == before[n] for n in names[1:])  # their spec is back where it was
    cond_after = fleet_condition(kube, namespace, "crash", "Degraded")
    assert cond_after is not None
    assert cond_after["status"] == "False"
    wait_for(
        lambda: (
            "RolloutResumed"
            in [e["reason"] for e in events(kube, namespace, "MarketplaceFleet", "crash")]
        ),
        timeout=15,
        what="the RolloutResumed Event",
    )
    assert len(watch.most_unavailable(since=started).unavailable) <= 1
