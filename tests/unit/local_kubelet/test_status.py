"""Pod status from container views: phase, conditions, readiness gates, restarts, back-off."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from local_kubelet import restarts, status
from local_kubelet.model import Pod

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(seconds=30)


def view(state: status.State, **kw: Any) -> status.ContainerView:
    return status.ContainerView(name="c", image="python:3", state=state, **kw)


RUNNING = status.Running(T0)
OK = status.Terminated(0, "Completed", T0, T1)
FAILED = status.Terminated(1, "Error", T0, T1)


@pytest.mark.parametrize(
    ("views", "phase"),
    [
        ([], "Pending"),
        ([view(status.Waiting("ContainerCreating"))], "Pending"),
        ([view(RUNNING), view(status.Waiting("ImageNotMapped"))], "Pending"),
        ([view(RUNNING)], "Running"),
        ([view(status.Waiting("CrashLoopBackOff"), restart_count=1, last_state=FAILED)], "Running"),
        ([view(OK, done=True), view(RUNNING)], "Running"),
        ([view(OK, done=True), view(OK, done=True)], "Succeeded"),
        ([view(OK, done=True), view(FAILED, done=True)], "Failed"),
    ],
)
def test_phase(views: list[status.ContainerView], phase: str) -> None:
    assert status.phase(views) == phase


def pod(gates: Sequence[str] = (), conditions: Sequence[dict[str, str]] = ()) -> Pod:
    return Pod.model_validate(
        {
            "metadata": {"name": "p", "namespace": "n", "uid": "u"},
            "spec": {
                "containers": [{"name": "c"}],
                "readinessGates": [{"conditionType": g} for g in gates],
            },
            "status": {"conditions": list(conditions)},
        }
    )


def by_type(conds: list[dict[str, Any]]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in conds}


def test_ready_needs_ready_containers() -> None:
    conds = status.conditions(
        pod(), [view(RUNNING, ready=False)], sandbox_ready=True, initialized=True, now=T1
    )
    assert by_type(conds) == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "ContainersReady": "False",
        "Ready": "False",
    }
    conds = status.conditions(
        pod(), [view(RUNNING, ready=True)], sandbox_ready=True, initialized=True, now=T1
    )
    assert by_type(conds)["Ready"] == "True"


@pytest.mark.parametrize(
    ("gate_conditions", "ready"),
    [
        ([], "False"),
        ([{"type": "g", "status": "False"}], "False"),
        ([{"type": "g", "status": "True"}], "True"),
    ],
)
def test_ready_needs_every_readiness_gate_true(
    gate_conditions: list[dict[str, str]], ready: str
) -> None:
    conds = status.conditions(
        pod(["g"], gate_conditions),
        [view(RUNNING, ready=True)],
        sandbox_ready=True,
        initialized=True,
        now=T1,
    )
    assert by_type(conds)["ContainersReady"] == "True"
    assert by_type(conds)["Ready"] == ready
    if ready == "False":
        ready_condition = next(c for c in conds if c["type"] == "Ready")
        assert ready_condition["reason"] == "ReadinessGatesNotReady"


def test_transition_time_is_kept_while_the_status_does_not_change() -> None:
    before = pod(
        conditions=[
            {"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}
        ]
    )
    conds = status.conditions(
        before, [view(RUNNING, ready=True)], sandbox_ready=True, initialized=True, now=T1
    )
    assert (
        next(c for c in conds if c["type"] == "Ready")["lastTransitionTime"]
        == "2025-01-01T00:00:00Z"
    )
    conds = status.conditions(
        before, [view(RUNNING, ready=False)], sandbox_ready=True, initialized=True, now=T1
    )
    assert (
        next(c for c in conds if c["type"] == "Ready")["lastTransitionTime"]
        == "2026-01-01T00:00:30Z"
    )


def test_pod_status_reports_ip_restarts_and_container_states() -> None:
    crashed = view(
        status.Waiting("CrashLoopBackOff", "back-off 2s"), restart_count=2, last_state=FAILED
    )
    body = status.pod_status(
        pod(),
        [crashed],
        pod_ip="127.1.0.9",
        host_ip="127.0.0.1",
        start_time=T0,
        sandbox_ready=True,
        initialized=True,
        now=T1,
    )
    assert body["podIP"] == "127.1.0.9"
    # The whole list is replaced, never merged with a previous address.
    assert body["podIPs"] == [{"ip": "127.1.0.9"}, {"$patch": "replace"}]
    assert body["startTime"] == "2026-01-01T00:00:00Z"
    (entry,) = body["containerStatuses"]
    assert entry["restartCount"] == 2
    assert entry["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2s"}}
    assert entry["lastState"]["terminated"]["exitCode"] == 1


def test_no_pod_ip_before_the_sandbox_exists() -> None:
    body = status.pod_status(
        pod(),
        [view(status.Waiting("ContainerCreating"))],
        pod_ip=None,
        host_ip="127.0.0.1",
        start_time=T0,
        sandbox_ready=False,
        initialized=True,
        now=T1,
    )
    assert "podIP" not in body
    assert by_type(body["conditions"])["PodReadyToStartContainers"] == "False"


@pytest.mark.parametrize(
    ("policy", "code", "again"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("Never", 0, False),
        ("Never", 137, False),
    ],
)
def test_restart_policy(policy: str, code: int, again: bool) -> None:
    assert restarts.should_restart(policy, code) is again


def test_back_off_restarts_a_first_crash_at_once_then_doubles_up_to_the_cap() -> None:
    # A real kubelet's shape: no back-off entry before the first exit, then 10 s, 20 s, ...
    initial, cap = timedelta(seconds=10), timedelta(minutes=5)
    delays = [restarts.backoff_delay(n, initial=initial, cap=cap).total_seconds() for n in range(9)]
    assert delays == [0, 0, 10, 20, 40, 80, 160, 300, 300]
    assert restarts.backoff_delay(10_000, initial=initial, cap=cap) == cap


def test_a_long_healthy_run_resets_the_crash_count() -> None:
    reset = timedelta(minutes=10)
    assert restarts.crashes_after_exit(5, ran_for=timedelta(seconds=3), reset_after=reset) == 6
    assert restarts.crashes_after_exit(5, ran_for=timedelta(minutes=11), reset_after=reset) == 1


def test_the_last_written_conditions_win_over_a_pod_that_does_not_show_them_yet() -> None:
    """The watched pod lags the kubelet's own write: the transition time already sent is
    kept, so the next status equals the last one and is not written again (a write and
    a watch event to every client per flip, a dozen per starting pod, before)."""
    stale = pod(conditions=[{"type": "ContainersReady", "status": "False"}])
    first = status.conditions(
        stale, [view(RUNNING, ready=True)], sandbox_ready=True, initialized=True, now=T0
    )
    again = status.conditions(
        stale,
        [view(RUNNING, ready=True)],
        sandbox_ready=True,
        initialized=True,
        now=T1,
        written=first,
    )
    assert again == first
    ready = next(c for c in again if c["type"] == "ContainersReady")
    assert ready["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_a_true_condition_clears_the_reason_of_its_last_false() -> None:
    """Conditions merge by type in a strategic merge patch; null removes the old reason."""
    conds = status.conditions(
        pod(conditions=[{"type": "ContainersReady", "status": "False", "reason": "X"}]),
        [view(RUNNING, ready=True)],
        sandbox_ready=True,
        initialized=True,
        now=T1,
    )
    assert next(c for c in conds if c["type"] == "ContainersReady")["reason"] is None
