"""The poll interval stretched by fleet size, and the gate's silence stretched with it."""

from __future__ import annotations

import pytest
from marketplace_operator.reconcile.pacing import poll_interval, silence_tolerated


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
    got = poll_interval(base, polled, per_second)
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
