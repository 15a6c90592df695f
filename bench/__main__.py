"""Run the benchmarks: every `bench/bench_*.py` module's `main()` (sync or async), in name order.

`python -m bench` runs all of them; `python -m bench node policy` runs those
whose module name contains any of the words. A `main()` that returns a
non-zero int (a missed target) makes the whole run exit non-zero, after
every selected benchmark has run.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import sys
import time
from pathlib import Path


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
    result = entry()
    if inspect.isawaitable(result):
        result = asyncio.run(result)  # type: ignore[arg-type]
    print(f"[{name} finished in {time.perf_counter() - started:.1f} s]\n", flush=True)
    return result if isinstance(result, int) else 0


def main(argv: list[str]) -> int:
    names = discover(argv)
    if not names:
        print(f"no benchmark matches {argv}")
        return 2
    failures = [name for name in names if run(name) != 0]
    if failures:
        print(f"targets missed in: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
