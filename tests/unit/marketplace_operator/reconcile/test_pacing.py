"""The poll interval stretched by fleet size, and the gate's silence stretched with it."""

from __future__ import annotations

import pytest
from marketplace_operator.reconcile.pacing import (
    JOIN_BACKOFF_CAP_SECONDS,
    joining_interval,
    paced_interval,
    silence_tolerated,
)


@pytest.mark.parametrize(
    ("base", "polled", "per_second", "interval"),
    [
        (5.0, 0, 100.0, 5.0),  # no node yet
        (5.0, 100, 100.0, 5.0),  # 20 polls a second: within the rate
        (5.0, 500, 100.0, 5.0),  # exactly the rate
        (5.0, 1_000, 100.0, 10.0),  # 200 a second at 5 s: stretched to 100 a second
        (5.0, 10_000, 100.0, 100.0),
        (0.5, 64, 200.0, 0.5),  # a rollout step of 64 joining: the start-up pace
        (0.5, 1_000, 200.0, 5.0),  # 1,000 joining at once
    ],
)
def test_the_interval_keeps_all_polls_within_the_rate(
    base: float, polled: int, per_second: float, interval: float
) -> None:
    got = paced_interval(base, polled, per_second)
    assert got == pytest.approx(interval)
    assert polled / got <= per_second + 1e-9 or got == base


@pytest.mark.parametrize(
    ("silence", "failures", "interval", "tolerated"),
    [
        (15.0, 3, 5.0, 15.0),  # the configured silence covers three polls
        (15.0, 3, 10.0, 30.0),  # a stretched interval: still three polls, not one and a half
        (60.0, 3, 10.0, 60.0),
        (15.0, 1, 20.0, 20.0),
    ],
)
def test_a_stretched_interval_stretches_the_silence_tolerated(
    silence: float, failures: int, interval: float, tolerated: float
) -> None:
    assert silence_tolerated(silence, failures, interval) == tolerated


@pytest.mark.parametrize(
    ("waited", "interval"),
    [
        (0.0, 0.5),  # a node that just started: the start-up pace
        (0.9, 0.5),
        (2.0, 1.0),  # then half the time waited so far
        (3.0, 1.5),
        (4.0, 2.0),
        (60.0, JOIN_BACKOFF_CAP_SECONDS),  # never slower than the cap
    ],
)
def test_a_joining_node_is_polled_less_often_the_longer_it_waits(
    waited: float, interval: float
) -> None:
    assert joining_interval(0.5, waited) == pytest.approx(interval)


def test_a_slow_join_costs_fewer_polls_and_is_seen_soon_after() -> None:
    """Polled at the backed-off pace, a join that takes 6.5 s costs 7 polls (13 at 0.5 s),
    and the first poll after it comes within half its wait and the cap."""
    at, polls = 0.0, 0
    while at < 6.5:
        at += joining_interval(0.5, at)
        polls += 1
    assert polls <= 7
    assert at - 6.5 <= min(6.5 / 2, JOIN_BACKOFF_CAP_SECONDS)
