"""bench_scale's verdict on "growth no worse than linear" (issue 15), from measured costs."""

from __future__ import annotations

import math
from typing import Any, cast

import pytest

from bench.bench_scale import (
    FirstSeen,
    Phase,
    Result,
    _event_reasons,
    _growth,
    _work,
    _work_line,
    by_size,
    by_tenths,
    median_costs,
    typical,
)


def result(
    n: int,
    *,
    ready: float,
    cpu: float,
    peak: float,
    unfinished: str = "",
    reconcile: float = 1.0,
    passes: float = 0.0,
) -> Result:
    r = Result(n, peak=peak, unfinished=unfinished, reconcile=[reconcile])
    r.phases = {
        "apply -> all Ready": Phase(ready, cpu / 3, 0),
        "policy to every node": Phase(1, cpu / 3, 0),
        "spec change -> rollout complete": Phase(60, cpu / 3, 0, work={"passes": passes}),
    }
    return r


@pytest.mark.parametrize(
    ("big", "ok"),
    [
        (result(1000, ready=400, cpu=300, peak=250), True),  # every cost at most x10
        (result(1000, ready=400, cpu=300, peak=80), True),
        (result(1000, ready=500, cpu=300, peak=250), False),  # all Ready x12.5
        (result(1000, ready=400, cpu=301, peak=250), False),  # CPU x10.03
        (result(1000, ready=400, cpu=300, peak=250, unfinished="rollout NOT complete"), False),
        (result(1000, ready=400, cpu=300, peak=math.nan), False),  # not measured: not ok
        (result(1000, ready=400, cpu=300, peak=250, reconcile=10.5), False),  # p99 x10.5
    ],
)
def test_growth_is_linear_only_when_every_cost_grew_at_most_as_the_fleet(
    big: Result, ok: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    small = result(100, ready=40, cpu=30, peak=100, reconcile=1.0)
    assert _growth([small], [big]) is ok
    line = capsys.readouterr().out
    assert "growth 100 -> 1,000 nodes (x10)" in line
    assert ("[goal: each at most x10: ok]" in line) is ok


def test_the_operators_work_is_read_from_its_metrics_and_printed_busiest_first() -> None:
    samples = {
        'marketplace_operator_reconciliations_total{outcome="ok"}': 90.0,
        'marketplace_operator_reconciliations_total{outcome="retry"}': 10.0,
        'marketplace_operator_reconciliations_created{outcome="ok"}': 1.7e9,  # not a count
        'marketplace_operator_admin_api_calls_total{operation="status"}': 80.0,
        'marketplace_operator_admin_api_calls_total{operation="members"}': 120.0,
        'marketplace_operator_admin_api_calls_total{operation="drain"}': 0.0,
        'marketplace_operator_admin_api_errors_total{operation="status"}': 5.0,
        'marketplace_operator_status_writes_total{kind="peers"}': 30.0,
        'marketplace_operator_status_writes_total{kind="urgent"}': 40.0,
        'marketplace_operator_status_writes_total{kind="detail"}': 0.0,
        'marketplace_operator_watch_events_total{kind="pods"}': 700.0,
        'marketplace_operator_node_passes_total{trigger="event",poll="reused"}': 60.0,
        'marketplace_operator_node_passes_total{trigger="join",poll="asked"}': 0.0,
        'marketplace_operator_gc_seconds_total{generation="2"}': 3.0,
        'marketplace_operator_pass_turn_wait_seconds_bucket{le="0.5",urgent="true"}': 7.0,
        'marketplace_operator_pass_turn_wait_seconds_bucket{le="1.0",urgent="true"}': 8.0,
        'marketplace_operator_pass_turn_wait_seconds_count{urgent="true"}': 10.0,
        'marketplace_operator_pass_turn_wait_seconds_sum{urgent="true"}': 9.5,
        'marketplace_operator_pass_turn_wait_seconds_bucket{le="1.0",urgent="false"}': 50.0,
        'marketplace_operator_pass_turn_wait_seconds_count{urgent="false"}': 50.0,
    }
    work = _work(samples)
    assert work == {
        "passes": 100.0, "status": 80.0, "members": 120.0, "drain": 0.0,
        "writes peers": 30.0, "writes urgent": 40.0, "writes detail": 0.0, "events pods": 700.0,
        "pass event reused": 60.0, "pass join asked": 0.0, "gc gen2": 3.0,
        "waited urgent over 1 s": 2.0, "waited routine over 1 s": 0.0,
    }  # fmt: skip
    line = _work_line(Phase(1.0, 0.0, 0.0, work=work))
    assert line == (
        "node passes 100; admin calls: members 120, status 80; "
        "passes by trigger and poll: event reused 60; "
        "status writes: urgent 40, peers 30; watch events: pods 700; "
        "GC CPU-s by generation: gen2 3; turns waited for: urgent over 1 s 2"
    )
    assert _work_line(Phase(1.0, 0.0, 0.0)) == "node passes 0"


def test_the_rollouts_work_per_node_shows_what_grew_faster_than_the_fleet(
    capsys: pytest.CaptureFixture[str],
) -> None:
    small = result(100, ready=40, cpu=30, peak=100, passes=1_700)
    big = result(1000, ready=400, cpu=450, peak=200, passes=21_000)
    _growth([small], [big])
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("  per node in the rollout, 100 -> 1,000: ")
    assert "operator CPU ms 100.0 -> 150.0 (x1.50)" in line
    assert "passes 17.0 -> 21.0 (x1.24)" in line
    assert "status" not in line  # not counted at either size: left out, not shown as 0


def test_a_nodes_reconcile_is_timed_when_its_status_first_shows_the_generation() -> None:
    now = [10.0]
    seen = FirstSeen(clock=lambda: now[0])

    def status(name: str, generation: int) -> dict[str, Any]:
        return {"metadata": {"name": name}, "status": {"observedGeneration": generation}}

    seen.note(status("a", 1))
    now[0] = 11.0
    seen.note(status("a", 2))  # reconciled while the bench still patched others
    now[0] = 30.0
    seen.note(status("a", 2))  # a later status write of the same generation
    seen.note({"metadata": {"name": "b"}, "status": {}})
    assert seen.at("a", 2) == 11.0
    assert seen.at("a", 1) == 10.0
    assert seen.at("a", 3) is None
    assert seen.at("b", 1) is None


class Events:
    """The Events an API server lists: one by a kubelet with a count, two phase changes."""

    def list(self, _resource: Any, _namespace: str) -> list[dict[str, Any]]:
        kopf = {"source": {"component": "kopf"}}
        return [
            {**kopf, "reason": "PhaseChanged", "message": "Ready -> Replacing: replacing the pod"},
            {**kopf, "reason": "PhaseChanged", "message": "Ready -> Replacing: again"},
            {**kopf, "reason": "PhaseChanged", "message": "Starting -> Ready: serving"},
            {"reportingComponent": "kubelet", "reason": "Unhealthy", "count": 4},
            {"reason": "NodeReplaced"},
        ]


def test_events_are_tallied_by_poster_and_reason_and_phase_changes_by_transition() -> None:
    assert _event_reasons(cast("Any", Events()), "ns") == {
        "kopf PhaseChanged Ready -> Replacing": 2.0,
        "kopf PhaseChanged Starting -> Ready": 1.0,
        "kubelet Unhealthy": 4.0,
        "? NodeReplaced": 1.0,
    }


def test_by_tenths_shows_where_in_the_patch_order_the_slowest_were() -> None:
    queue = [i / 10 for i in range(100)]  # each waited behind the ones patched before it
    assert by_tenths(queue) == "0.9 1.9 2.9 3.9 4.9 5.9 6.9 7.9 8.9 9.9"
    few = [0.2] * 20
    few[1] = 7.0  # one held up early on (the first tenth: the first two)
    assert by_tenths(few) == "7.0 0.2 0.2 0.2 0.2 0.2 0.2 0.2 0.2 0.2"
    assert by_tenths([1.0, 2.0]) == "1.0 2.0"  # fewer than ten: one per latency
    assert by_tenths([]) == "-"


def test_a_size_measured_more_than_once_is_judged_by_each_costs_median(
    capsys: pytest.CaptureFixture[str],
) -> None:
    smalls = [
        result(100, ready=40, cpu=30, peak=100, reconcile=0.5, passes=1_700),
        result(100, ready=60, cpu=45, peak=100, reconcile=0.3, passes=1_900),  # a busy moment
        result(100, ready=42, cpu=31, peak=101, reconcile=0.4, passes=1_800),
    ]
    assert median_costs(smalls) == {
        "apply -> all Ready": 42,
        "reconcile p99": 0.4,
        "operator CPU-s": 31,
        "operator RSS (peak)": 100,
    }
    assert typical(smalls) is smalls[2]  # the median CPU-s
    big = result(1000, ready=415, cpu=305, peak=250, reconcile=3.9, passes=21_000)
    assert _growth(smalls, [big])  # x9.9 of the medians; x10.2 of the first run's CPU
    out = capsys.readouterr().out
    assert "(medians of 3 and 1 runs)" in out
    assert "passes 18.0 -> 21.0" in out  # per node: the typical run's
    assert not _growth([smalls[0]], [big])
    unfinished = result(1000, ready=415, cpu=305, peak=250, unfinished="rollout NOT complete")
    assert not _growth(smalls, [unfinished])
    # NaN where a run did not measure a cost: the others' median
    partial = [*smalls, result(100, ready=40, cpu=30, peak=math.nan)]
    assert median_costs(partial)["operator RSS (peak)"] == 100
    assert by_size([big, *smalls]) == {100: smalls, 1000: [big]}
