"""The garbage collector's pacing and its timing (`gcpace`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from marketplace_operator import gcpace
from marketplace_operator.metrics import Metrics
from prometheus_client import CollectorRegistry


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_pacing_freezes_the_start_and_collects_the_young_less_often(restored: None) -> None:
    gcpace.pace()
    assert gc.get_threshold() == (gcpace.YOUNG_THRESHOLD, *gcpace.OLDER_THRESHOLDS)
    assert gc.get_freeze_count() > 0  # the start's objects: out of every collection


def test_each_collections_cpu_time_is_counted_by_generation() -> None:
    metrics = Metrics(CollectorRegistry(), phases=dict)
    clock = iter([1.0, 1.25, 2.0, 2.5])
    timer = gcpace.Timer(metrics.gc_collection, clock=lambda: next(clock))
    timer("start", {"generation": 2})
    timer("stop", {"generation": 2, "collected": 10})
    timer("start", {"generation": 0})
    timer("stop", {"generation": 0, "collected": 0})
    seconds = metrics.registry.get_sample_value
    assert seconds("marketplace_operator_gc_seconds_total", {"generation": "2"}) == 0.25
    assert seconds("marketplace_operator_gc_seconds_total", {"generation": "0"}) == 0.5
    assert seconds("marketplace_operator_gc_seconds_total", {"generation": "1"}) == 0.0


def test_a_timer_is_installed_once_and_times_real_collections() -> None:
    times: list[tuple[int, float]] = []
    timer = gcpace.Timer(lambda generation, seconds: times.append((generation, seconds)))
    timer.install()
    timer.install()
    try:
        assert gc.callbacks.count(timer) == 1
        gc.collect()
    finally:
        timer.uninstall()
    assert times
    assert times[-1][0] == 2  # gc.collect() is a full collection
    assert all(seconds >= 0 for _, seconds in times)
