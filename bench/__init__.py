"""Benchmarks: `python -m bench [FILTER...]` runs each `bench/bench_*.py` matching a filter."""
