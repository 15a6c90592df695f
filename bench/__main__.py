"""Run the benchmarks: every `bench/bench_*.py` module's `main()` (sync or async), in name order.

`python -m bench` runs all of them; `python -m bench node policy` runs those
named by the words: a word that is a benchmark's whole name (`node` is
`bench_node`) selects that one, any other word every module whose name
contains it (`scale`, `prop`). A `main()` that returns a non-zero int (a
missed target) makes the whole run exit non-zero, after every selected
benchmark has run. What each prints (and adds through `bench.report`)
becomes its section of docs/benchmarks.md; one that raises
`report.NotRun` keeps its last section.

Each benchmark runs in a fresh interpreter (`python -m bench --one NAME`):
memory benchmarks measure resident memory, which would otherwise include
whatever the benchmarks before them left in the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import io
import pkgutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from bench import report


class _Tee(io.TextIOBase):
    """Print as usual and keep a copy (a benchmark's output becomes its report section)."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.copy = out, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def discover(filters: list[str]) -> list[str]:
    names = sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("bench_")
    )
    if not filters:
        return names
    exact = {f"bench_{f}" for f in filters} & set(names)
    loose = [f for f in filters if f"bench_{f}" not in exact]
    return [n for n in names if n in exact or any(f in n for f in loose)]


def run(name: str) -> int:
    module = importlib.import_module(f"bench.{name}")
    entry = getattr(module, "main", None)
    if entry is None:
        print(f"{name}: no main(), skipped")
        return 0
    started = time.perf_counter()
    report.begin(name)
    tee = _Tee(sys.stdout)
    try:
        with contextlib.redirect_stdout(tee):
            result = entry()
            if inspect.isawaitable(result):
                result = asyncio.run(result)  # type: ignore[arg-type]
    except report.NotRun as not_run:
        print(f"{name}: not run: {not_run}; its last section is kept\n", flush=True)
        return 1 if not_run.fails else 0
    seconds = time.perf_counter() - started
    status = result if isinstance(result, int) else 0
    report.finish(name, tee.copy.getvalue(), seconds, status)
    print(f"[{name} finished in {seconds:.1f} s]\n", flush=True)
    return status


def run_alone(name: str) -> int:
    """`run(name)` in a fresh interpreter: nothing earlier benchmarks left counts."""
    return subprocess.run([sys.executable, "-m", "bench", "--one", name], check=False).returncode


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"] and len(argv) == 2:
        return run(argv[1])
    names = discover(argv)
    if not names:
        print(f"no benchmark matches {argv}")
        return 2
    failures = [name for name in names if run_alone(name) != 0]
    report.assemble()
    print(f"report: {report.REPORT.relative_to(report.ROOT)}")
    if failures:
        print(f"targets missed in: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
