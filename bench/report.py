"""docs/benchmarks.md: every benchmark's latest numbers beside their anchors, plus plots.

`python -m bench [words]` runs benchmarks and, for each one run, rewrites its
section (docs/benchmarks/<name>.md): when and on how loaded a machine, the
lines that carry a target or bound (the anchors), whatever tables and plots
the benchmark added with `table`/`add`/`plot`, and its full output. Then it
reassembles docs/benchmarks.md from every section on disk, so running one
benchmark updates its section and keeps the others' last numbers (each dated).

A benchmark run on its own (`python bench/bench_x.py`) writes nothing.
"""

from __future__ import annotations

import datetime
import os
import pkgutil
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
SECTIONS = ROOT / "docs" / "benchmarks"
ANCHOR_RE = re.compile(r"\btarget\b|\bbound\b|\bgoal\b", re.IGNORECASE)

_current: str | None = None  # the benchmark being run by `python -m bench`
_extras: list[str] = []
_load_at_start = ""


def short(module: str) -> str:
    return module.removeprefix("bench_")


def _load() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine() -> str:
    """CPUs and load average: scale numbers on a shared machine need this beside them."""
    return f"{os.cpu_count()} CPUs, load average {_load()} (1/5/15 min)"


class NotRun(Exception):
    """A benchmark that cannot run here (no cluster, wrong cluster mode).

    Its last section stays as it was: a run that measured nothing must not
    replace numbers that were measured. `fails` says whether the whole run
    should then exit non-zero (it should when `make bench` set the
    benchmark up and it still could not run).
    """

    def __init__(self, why: str, *, fails: bool = True) -> None:
        super().__init__(why)
        self.fails = fails


def begin(module: str) -> None:
    global _current, _load_at_start
    _current, _extras[:], _load_at_start = module, [], _load()


def add(markdown: str) -> None:
    """Append markdown (a table, a paragraph) to the running benchmark's section."""
    if _current is not None:
        _extras.append(markdown.rstrip() + "\n")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot(name: str, title: str, draw: Callable[[Axes], None]) -> None:
    """Draw a PNG into docs/benchmarks/<name>.png and link it from the running section."""
    if _current is None:
        return
    # Imported here: ~40 MiB that bench_node_memory must not count as the node's.
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(7, 4), dpi=100)  # no pyplot: no GUI backend, no global state
    ax = fig.subplots()
    draw(ax)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    SECTIONS.mkdir(parents=True, exist_ok=True)
    fig.savefig(SECTIONS / f"{name}.png")
    add(f"![{title}](benchmarks/{name}.png)")


def finish(module: str, output: str, seconds: float, status: int) -> None:
    """Write the section of `module` from what it printed and added."""
    global _current
    anchors = [line.strip() for line in output.splitlines() if ANCHOR_RE.search(line)]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"## {short(module)}\n",
        # Both ends: a benchmark's own teardown (50 node processes ending) or a neighbour's
        # burst can lift the 1-minute figure at the end far above what the run saw.
        f"_Measured {now} on {os.cpu_count()} CPUs, load average {_load_at_start} at the "
        f"start and {_load()} at the end (1/5/15 min); {seconds:.0f} s; "
        f"`python -m bench {short(module)}`; "
        f"{'every target met' if status == 0 else 'a target was MISSED'}._\n",
    ]
    if anchors:
        parts.append("Anchors (target or bound, and the number measured):\n")
        parts += [f"- `{line}`" for line in anchors]
        parts.append("")
    parts += _extras
    parts += [
        "<details><summary>Full output</summary>\n",
        "```",
        output.rstrip(),
        "```",
        "</details>\n",
    ]
    SECTIONS.mkdir(parents=True, exist_ok=True)
    (SECTIONS / f"{module}.md").write_text("\n".join(parts))
    _current, _extras[:] = None, []


def assemble() -> None:
    """docs/benchmarks.md from every benchmark's latest section (in name order)."""
    names = sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("bench_")
    )
    parts = [
        "# Benchmarks\n",
        "Written by `make bench` (`python -m bench [words]` reruns some and keeps the "
        "others' last sections; do not edit by hand). Each section says when it was "
        "measured and how loaded the machine was: this machine is shared, so compare "
        "numbers measured together, and read the ratios before the absolute times. "
        "How each benchmark works is in its module's docstring (`bench/`), what the "
        "numbers mean for operators in docs/operator.md, docs/node.md and docs/gossip.md.\n",
        "| Benchmark | Measured |",
        "|---|---|",
    ]
    bodies = []
    for name in names:
        path = SECTIONS / f"{name}.md"
        if path.exists():
            text = path.read_text()
            when = re.search(r"_Measured ([^;]+);", text)
            parts.append(f"| [{short(name)}](#{short(name)}) | {when.group(1) if when else '?'} |")
            bodies.append(text)
        else:
            parts.append(f"| {short(name)} | not yet: `python -m bench {short(name)}` |")
    if (SECTIONS / "chaos.md").exists():  # written by `make chaos`, not by a benchmark
        parts.append(
            "\nThe chaos suite's table (`make chaos`): [benchmarks/chaos.md](benchmarks/chaos.md)."
        )
    REPORT.write_text("\n".join(parts) + "\n\n" + "\n".join(bodies))
