"""The chaos suite's pure parts: the disruption budget from a timeline, and the table.

The suite (tests/e2e/test_chaos.py) records, per scenario, a timeline of which fleet
members were unavailable (`Sample`s from the pod watch) and one `Outcome` a line in a
JSON-lines file. `make chaos` then runs `python -m bench.chaos_report FILE`: it prints
the fault x situation table and writes it to docs/benchmarks/chaos.md.

The budget rule (`budget_breaches`): the operator may take at most `maxUnavailable`
members down on purpose. A member the fault itself took down is excused while it is
down, but the operator must not take another one down while that leaves more than
`maxUnavailable` out: a rollout waits for the fleet to heal, as a PodDisruptionBudget
would make it.
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydantic

from bench import report

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks" / "chaos.md"


@dataclass(frozen=True)
class Sample:
    """At `at` (seconds, any monotonic clock), these members were unavailable."""

    at: float
    unavailable: frozenset[str]


@dataclass(frozen=True)
class Breach:
    at: float
    unavailable: frozenset[str]
    why: str


def budget_breaches(
    samples: Iterable[Sample], *, max_unavailable: int, faulted: frozenset[str] = frozenset()
) -> list[Breach]:
    """Every sample where the operator's own disruption broke the budget (see the module)."""
    out: list[Breach] = []
    before: frozenset[str] = frozenset()
    for s in sorted(samples, key=lambda s: s.at):
        ours = s.unavailable - faulted
        newly = ours - before
        if len(ours) > max_unavailable:
            out.append(Breach(s.at, s.unavailable, f"{len(ours)} down besides the fault's"))
        elif newly and len(s.unavailable) > max_unavailable:
            out.append(
                Breach(s.at, s.unavailable, f"{sorted(newly)} went down with the budget spent")
            )
        before = s.unavailable
    return out


def down_seconds(samples: Iterable[Sample], member: str, *, until: float) -> float:
    """How long `member` was unavailable, from the timeline up to `until`."""
    total, went_down = 0.0, None
    for s in sorted(samples, key=lambda s: s.at):
        if s.at > until:
            break
        if member in s.unavailable and went_down is None:
            went_down = s.at
        elif member not in s.unavailable and went_down is not None:
            total, went_down = total + s.at - went_down, None
    return total + (until - went_down if went_down is not None else 0.0)


def most_down(samples: Iterable[Sample]) -> int:
    return max((len(s.unavailable) for s in samples), default=0)


class Outcome(pydantic.BaseModel):
    """One scenario's result: a row of the table."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    fault: str
    situation: str
    passed: bool
    recovery_seconds: float | None = None  # fault injected -> fleet converged again
    acknowledged: int = 0  # publishes the fleet acknowledged under the fault
    lost: int = 0  # of those, missing from a node after convergence
    requests: int = 0  # client reads sent
    failed_requests: int = 0
    most_down: int = 0
    max_unavailable: int = 1
    seen_in: tuple[str, ...] = ()  # status / events / metrics where the fault showed
    note: str = ""


def _cell(o: Outcome) -> str:
    verdict = "ok" if o.passed else "FAILED"
    took = "never" if o.recovery_seconds is None else f"{o.recovery_seconds:.0f} s"
    return f"{verdict}, {took}"


def render(outcomes: Sequence[Outcome]) -> str:
    """Markdown: the fault x situation matrix, then one line of detail per scenario."""
    situations = sorted({o.situation for o in outcomes})
    faults = list(dict.fromkeys(o.fault for o in outcomes))
    by = {(o.fault, o.situation): o for o in outcomes}
    lines = [
        "| fault | " + " | ".join(situations) + " |",
        "|---|" + "---|" * len(situations),
    ]
    for f in faults:
        cells = [_cell(by[f, s]) if (f, s) in by else "not run" for s in situations]
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| fault | situation | publishes acked / lost | reads failed / sent "
        "| most down (budget) | shows in | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.fault} | {o.situation} | {o.acknowledged} / {o.lost} "
            f"| {o.failed_requests} / {o.requests} | {o.most_down} ({o.max_unavailable}) "
            f"| {', '.join(o.seen_in) or 'nowhere'} | {o.note} |"
        )
    return "\n".join(lines) + "\n"


def read(path: Path) -> list[Outcome]:
    """The outcomes in `path`; a scenario run again counts with its last outcome."""
    outcomes = [
        Outcome.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()
    ]
    return list({(o.fault, o.situation): o for o in outcomes}.values())


def main(argv: Sequence[str]) -> int:
    """Print the table of the outcomes in argv[0] and write it to docs/benchmarks/chaos.md."""
    outcomes = read(Path(argv[0]))
    table = render(outcomes)
    print(table)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    REPORT.write_text(
        "# Chaos suite\n\n"
        f"_Written {now} on {report.machine()} by `make chaos` (tests/e2e/test_chaos.py; "
        'what it asserts and what the results mean: docs/operator.md, "The chaos suite"; '
        "how each fault is made: docs/local-cluster.md)._ Each cell: the verdict, and the "
        'time from the fault to a converged fleet; "not run": the scenario failed before '
        "its fault (see the suite's output). Every scenario runs under steady client load "
        "(reads, and a publish a second).\n\n" + table
    )
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
