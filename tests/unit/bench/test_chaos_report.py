"""The chaos suite's budget accounting and table (bench/chaos_report.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import chaos_report
from bench.chaos_report import Outcome, Sample, budget_breaches


def timeline(*steps: tuple[float, str]) -> list[Sample]:
    return [Sample(at, frozenset(down.split())) for at, down in steps]


def test_a_rollout_one_at_a_time_keeps_the_budget() -> None:
    samples = timeline((0, ""), (1, "a"), (2, ""), (3, "b"), (4, ""), (5, "c"), (6, ""))
    assert budget_breaches(samples, max_unavailable=1) == []
    assert chaos_report.most_down(samples) == 1


def test_two_down_at_once_breaks_a_budget_of_one() -> None:
    samples = timeline((0, "a"), (1, "a b"), (2, "b"))
    [breach] = budget_breaches(samples, max_unavailable=1)
    assert breach.at == 1
    assert breach.unavailable == {"a", "b"}


def test_two_down_is_within_a_budget_of_two() -> None:
    assert budget_breaches(timeline((0, "a b"), (1, "")), max_unavailable=2) == []


def test_the_faulted_member_is_excused_while_it_is_down() -> None:
    # The rollout had b down when the fault took a: two out, but the operator did not
    # take b down after the budget was spent.
    samples = timeline((0, "b"), (1, "a b"), (2, "a"), (3, ""))
    assert budget_breaches(samples, max_unavailable=1, faulted=frozenset({"a"})) == []


def test_a_step_started_while_the_fault_holds_the_budget_is_a_breach() -> None:
    samples = timeline((0, "a"), (1, "a b"), (2, "a"), (3, ""))
    [breach] = budget_breaches(samples, max_unavailable=1, faulted=frozenset({"a"}))
    assert breach.at == 1
    assert breach.why == "['b'] went down with the budget spent"


def test_two_of_the_operators_own_are_a_breach_even_beside_a_fault() -> None:
    samples = timeline(
        (0, "a b c"),
    )
    [breach] = budget_breaches(samples, max_unavailable=1, faulted=frozenset({"a"}))
    assert breach.why == "2 down besides the fault's"


def test_samples_are_read_in_time_order() -> None:
    samples = timeline((2, "a"), (1, "a b"), (0, "b"))
    assert budget_breaches(samples, max_unavailable=1, faulted=frozenset({"a"})) == []


def test_down_seconds_adds_every_span_and_one_still_open() -> None:
    samples = timeline((0, ""), (1, "a"), (2, "a b"), (3, "b"), (5, "a"), (9, "a"))
    assert chaos_report.down_seconds(samples, "a", until=10) == 2 + 5
    assert chaos_report.down_seconds(samples, "b", until=10) == 3
    assert chaos_report.down_seconds(samples, "a", until=2.5) == 1.5
    assert chaos_report.down_seconds(samples, "c", until=10) == 0


def test_an_empty_timeline_has_nothing_down() -> None:
    assert chaos_report.most_down([]) == 0
    assert budget_breaches([], max_unavailable=0) == []


def outcome(fault: str, situation: str, **kw: object) -> Outcome:
    return Outcome.model_validate({"fault": fault, "situation": situation, "passed": True, **kw})


def test_the_table_is_fault_by_situation_with_the_recovery_time() -> None:
    table = chaos_report.render(
        [
            outcome("operator SIGKILL", "rollout", recovery_seconds=12.4),
            outcome("operator SIGKILL", "policy change", recovery_seconds=3.0),
            outcome("node SIGSTOP 30 s", "rollout", passed=False, seen_in=("status", "events")),
        ]
    )
    lines = table.splitlines()
    assert lines[0] == "| fault | policy change | rollout |"
    assert lines[2] == "| operator SIGKILL | ok, 3 s | ok, 12 s |"
    assert lines[3] == "| node SIGSTOP 30 s | not run | FAILED, never |"
    assert "| node SIGSTOP 30 s | rollout | 0 / 0 | 0 / 0 | 0 (1) | status, events |  |" in lines
    assert "| operator SIGKILL | rollout | 0 / 0 | 0 / 0 | 0 (1) | nowhere |  |" in lines


def test_main_writes_the_report_and_fails_on_a_failed_scenario(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "chaos.md"
    monkeypatch.setattr(chaos_report, "REPORT", report)
    results = tmp_path / "results.jsonl"
    good = outcome("etcd kill -9", "rollout", recovery_seconds=20)
    results.write_text(good.model_dump_json() + "\n\n")
    assert chaos_report.main([str(results)]) == 0
    assert "| etcd kill -9 | ok, 20 s |" in report.read_text()
    assert "| etcd kill -9 | ok, 20 s |" in capsys.readouterr().out
    bad = outcome("etcd kill -9", "policy change", passed=False)
    results.write_text(good.model_dump_json() + "\n" + bad.model_dump_json() + "\n")
    assert chaos_report.main([str(results)]) == 1


def test_a_bad_result_line_is_refused() -> None:
    with pytest.raises(ValueError, match="extra"):
        Outcome.model_validate({"fault": "x", "situation": "y", "passed": True, "oops": 1})


def test_a_scenario_run_again_counts_with_its_last_outcome(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    first = outcome("node SIGKILL", "rollout", passed=False)
    again = outcome("node SIGKILL", "rollout", recovery_seconds=5)
    other = outcome("node SIGKILL", "policy change")
    lines = [first.model_dump_json(), other.model_dump_json(), again.model_dump_json()]
    results.write_text("\n".join(lines))
    assert chaos_report.read(results) == [again, other]
