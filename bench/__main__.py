"""Run the benchmarks: every `bench/bench_*.py` module's `main()` (sync or async), in name order.

`python -m bench` runs all of them; `python -m bench node policy` runs those
whose module name contains any of the words. A `main()` that returns a
non-zero int (a missed target) makes the whole run exit non-zero, after
every selected benchmark has run. What each prints (and adds through
`bench.report`) becomes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import io
import pkgutil
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
    return [n for n in names if not filters or any(f in n for f in filters)]


def run(name: str) -> int:
    module = importlib.import_module(f"bench.{name}")
    entry = getattr(module, "main", None)
    if entry is None:
        print(f"{name}: no main(), skipped")
        return 0
    started = time.perf_counter()
    report.begin(name)
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        result = entry()
        if inspect.isawaitable(result):
            result = asyncio.run(result)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    status = result if isinstance(result, int) else 0
    report.finish(name, tee.copy.getvalue(), seconds, status)
    print(f"[{name} finished in {seconds:.1f} s]\n", flush=True)
    return status


def main(argv: list[str]) -> int:
    names = discover(argv)
    if not names:
        print(f"no benchmark matches {argv}")
        return 2
    failures = [name for name in names if run(name) != 0]
    report.assemble()
    print(f"report: {report.REPORT.relative_to(report.ROOT)}")
    if failures:
        print(f"targets missed in: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
