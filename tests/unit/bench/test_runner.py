"""`python -m bench`: which benchmarks the words select, and what a run that cannot happen keeps."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # `bench` is not an installed package

from bench import __main__ as runner
from bench import report


def test_no_word_selects_every_benchmark() -> None:
    names = runner.discover([])
    assert {"bench_node", "bench_node_memory", "bench_policy", "bench_scale"} <= set(names)
    assert names == sorted(names)


def test_a_whole_name_selects_that_benchmark_alone() -> None:
    assert runner.discover(["node", "policy"]) == ["bench_node", "bench_policy"]


def test_a_partial_word_selects_every_name_that_contains_it() -> None:
    assert runner.discover(["prop"]) == ["bench_policy_propagation"]
    assert runner.discover(["node_", "policy"]) == ["bench_node_memory", "bench_policy"]


@pytest.fixture
def sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(report, "SECTIONS", tmp_path)
    return tmp_path


def _benchmark(monkeypatch: pytest.MonkeyPatch, main: Callable[[], int]) -> str:
    module = types.ModuleType("bench.bench_fake")
    module.main = main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bench.bench_fake", module)
    return "bench_fake"


@pytest.mark.parametrize(("fails", "status"), [(True, 1), (False, 0)])
def test_a_benchmark_that_cannot_run_keeps_its_last_section(
    sections: Path, monkeypatch: pytest.MonkeyPatch, fails: bool, status: int
) -> None:
    (sections / "bench_fake.md").write_text("## fake\nthe numbers measured last time\n")

    def main() -> int:
        print("half a line")
        raise report.NotRun("no cluster here", fails=fails)

    assert runner.run(_benchmark(monkeypatch, main)) == status
    assert (sections / "bench_fake.md").read_text() == "## fake\nthe numbers measured last time\n"


def test_a_benchmark_that_ran_replaces_its_section(
    sections: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sections / "bench_fake.md").write_text("## fake\nold\n")

    def main() -> int:
        print("p99 12 ms (target < 10 ms)")
        return 1

    assert runner.run(_benchmark(monkeypatch, main)) == 1
    text = (sections / "bench_fake.md").read_text()
    assert "old" not in text
    assert "a target was MISSED" in text
    assert "- `p99 12 ms (target < 10 ms)`" in text


def test_a_section_records_the_load_at_the_start_and_at_the_end(
    sections: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.getloadavg", lambda: (6.2, 9.7, 7.6))

    def main() -> int:  # its teardown lifts the load, as 50 node processes ending did
        monkeypatch.setattr("os.getloadavg", lambda: (37.4, 19.9, 11.7))
        return 0

    assert runner.run(_benchmark(monkeypatch, main)) == 0
    text = (sections / "bench_fake.md").read_text()
    assert "load average 6.2 / 9.7 / 7.6 at the start and 37.4 / 19.9 / 11.7 at the end" in text
