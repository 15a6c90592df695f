"""A pause annotation halts a rollout after the current step; removing it resumes in place."""

from __future__ import annotations

import time

import loadgen
from e2e_helpers import OperatorProcess, wait_for
from marketplace_operator import k8s
from rollout_helpers import (
    PAUSED,
    fleet_condition,
    fleet_status,
    make_fleet,
    pod_uids,
    request_restart,
    wait_rollout,
)


def test_pause_halts_after_the_current_step_and_resume_finishes(
    kube: k8s.BlockingKube, kubeconfig: str, namespace: str, operator: OperatorProcess
) -> None:
    names = make_fleet(kube, namespace, "hold", 4)
    before = pod_uids(kube, namespace, names)

    with loadgen.FleetWatch(kubeconfig, namespace, "hold", names) as watch:
        started = time.monotonic()
        request_restart(kube, namespace, names)
        wait_for(
            lambda: fleet_status(kube, namespace, "hold").get("current") == names[0],
            timeout=30,
            interval=0.05,
            what="the first step",
        )
        kube.patch(k8s.FLEETS, namespace, "hold", {"metadata": {"annotations": {PAUSED: "true"}}})
        wait_for(
            lambda: fleet_status(kube, namespace, "hold").get("phase") == "Paused",
            timeout=60,
            what="the rollout to pause",
        )
        paused = fleet_status(kube, namespace, "hold")
        done = paused["updated"]
        assert 1 <= done < len(names), paused
        assert paused["blockedBy"] == "paused"
        assert [p["node"] for p in paused["plan"]] == names[done:]  # its place, kept
        progressing = fleet_condition(kube, namespace, "hold", "Progressing")
        assert progressing is not None
        assert (progressing["status"], progressing["reason"]) == ("False", "Paused")
        held = pod_uids(kube, namespace, names)
        time.sleep(6)
        assert pod_uids(kube, namespace, names) == held  # nothing moves while paused
        assert fleet_status(kube, namespace, "hold")["phase"] == "Paused"

        kube.patch(k8s.FLEETS, namespace, "hold", {"metadata": {"annotations": {PAUSED: None}}})
        wait_rollout(kube, namespace, "hold", names, before, timeout=120)

    assert all(len(watch.uids_seen[n]) == 2 for n in names), watch.uids_seen  # each once
    assert len(watch.most_unavailable(since=started).unavailable) <= 1
