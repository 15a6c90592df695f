"""Escalation: threshold per window, geometric ban growth capped at the maximum, bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marketplace_node.policy.escalation import (
    History,
    Offence,
    Offenders,
    ban_seconds,
    escalate,
)
from marketplace_protocol.admin import Escalation

POLICY = Escalation(
    threshold=5, window_seconds=10, first_ban_seconds=60, backoff_factor=2, max_ban_seconds=600
)


def offend(
    history: History | None, times: list[float], offence: Offence = Offence.RATE_LIMITED
) -> tuple[History | None, list[float]]:
    """Apply offences at `times`; returns the history and the ban lengths decided."""
    lengths = []
    for now in times:
        history, ban = escalate(history, offence, POLICY, now)
        if ban is not None:
            lengths.append(ban.seconds)
    return history, lengths


def test_threshold_violations_at_once_ban_and_fewer_do_not() -> None:
    assert offend(None, [0.0] * 4)[1] == []
    assert offend(None, [0.0] * 5)[1] == [60.0]


def test_violations_spread_below_the_rate_never_ban() -> None:
    # 5 per 10 s is the threshold; 4 per 10 s forever stays clean.
    assert offend(None, [i * 2.5 for i in range(1_000)])[1] == []


def test_ban_length_grows_geometrically_and_caps_at_the_maximum() -> None:
    history: History | None = None
    lengths: list[float] = []
    now = 0.0
    for _ in range(8):
        history, new = offend(history, [now] * 5)
        lengths += new
        now += 1_000.0
    assert lengths == [60, 120, 240, 480, 600, 600, 600, 600]


def test_ban_length_does_not_overflow_after_very_many_bans() -> None:
    steep = Escalation(first_ban_seconds=1, backoff_factor=100, max_ban_seconds=3_600)
    assert ban_seconds(steep, 10**6) == 3_600


@pytest.mark.parametrize(
    ("offence", "count_to_ban"),
    [
        (Offence.RATE_LIMITED, 5),
        (Offence.MALFORMED_REQUEST, 3),
        (Offence.INVALID_DATA, 1),
        (Offence.BAD_SIGNATURE, 1),
        (Offence.LOW_REPUTATION, 1),
    ],
)
def test_offence_weights(offence: Offence, count_to_ban: int) -> None:
    _, before = offend(None, [0.0] * (count_to_ban - 1), offence)
    _, at = offend(None, [0.0] * count_to_ban, offence)
    assert before == []
    assert len(at) == 1


def test_history_counts_every_offence_and_ban() -> None:
    history, _ = offend(None, [0.0] * 12)
    assert history is not None
    assert history.offences == 12
    assert history.bans == 2


def test_a_clock_reading_that_goes_back_counts_as_no_time() -> None:
    # escalate sees monotonic readings; should one ever go back, no bucket drains.
    history, _ = offend(None, [100.0, 100.0, 100.0, 100.0])
    _, ban = escalate(history, Offence.RATE_LIMITED, POLICY, 50.0)
    assert ban is not None


times = st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=80).map(sorted)


@settings(max_examples=300, deadline=None)
@given(times=times)
def test_never_bans_when_every_window_holds_fewer_than_threshold(times: list[float]) -> None:
    w, t = POLICY.window_seconds, POLICY.threshold
    if any(sum(1 for y in times if x - w < y <= x) >= t for x in times):
        return  # some window reaches the threshold: not this property's case
    assert offend(None, times)[1] == []


# Spans up to 99.9 % of the window: at exactly one window the first and last
# offence are not in one (half-open) window, and the bucket's level lands on the
# threshold itself, where float rounding decides (hypothesis 6.100 found 10.0).
@settings(max_examples=300, deadline=None)
@given(
    start=st.floats(min_value=0, max_value=1_000),
    span=st.floats(min_value=0, max_value=9.99),
    extra=st.integers(min_value=0, max_value=20),
)
def test_always_bans_twice_the_threshold_within_one_window(
    start: float, span: float, extra: int
) -> None:
    n = 2 * POLICY.threshold + extra
    times = [start + span * i / (n - 1) for i in range(n)]
    assert offend(None, times)[1] != []


def test_offenders_are_bounded_and_forget_the_least_recent() -> None:
    offenders = Offenders(capacity=2)
    offenders.record("a", Offence.RATE_LIMITED, POLICY, 0.0)
    offenders.record("b", Offence.RATE_LIMITED, POLICY, 0.0)
    offenders.record("a", Offence.RATE_LIMITED, POLICY, 0.0)
    offenders.record("c", Offence.RATE_LIMITED, POLICY, 0.0)
    assert len(offenders) == 2
    assert offenders.get("b") is None
    history = offenders.get("a")
    assert history is not None
    assert history.offences == 2


def test_offenders_return_the_ban_decision() -> None:
    offenders = Offenders()
    decisions = [offenders.record("x", Offence.INVALID_DATA, POLICY, 0.0) for _ in range(2)]
    assert [d.ban_number for d in decisions if d is not None] == [1, 2]
    assert [d.seconds for d in decisions if d is not None] == [60, 120]
