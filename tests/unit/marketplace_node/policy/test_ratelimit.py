"""GCRA: burst then sustained rate, exact retry hints, and a bounded key table."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marketplace_node.policy.ratelimit import Gcra, KeyedLimiter, Rate
from marketplace_protocol.admin import Limit


def test_fresh_bucket_admits_exactly_burst_at_once() -> None:
    gate = Gcra(Limit(rate=10, burst=5))
    results = [gate.check(100.0)[0] for _ in range(7)]
    assert results == [True] * 5 + [False] * 2


def test_refusal_reports_when_the_next_request_will_pass() -> None:
    gate = Gcra(Limit(rate=4, burst=2))
    assert gate.check(0.0)[0]
    assert gate.check(0.0)[0]
    allowed, retry_after = gate.check(0.0)
    assert not allowed
    assert retry_after == pytest.approx(0.25)
    assert not gate.check(0.2499)[0]
    assert gate.check(0.25)[0]


def test_refused_requests_do_not_push_the_gate_further_away() -> None:
    gate = Gcra(Limit(rate=1, burst=1))
    assert gate.check(0.0)[0]
    for _ in range(1_000):
        assert not gate.check(0.5)[0]
    assert gate.check(1.0)[0]


def test_sustained_rate_after_the_burst() -> None:
    gate = Gcra(Limit(rate=10, burst=1))
    admitted = sum(gate.check(t / 100)[0] for t in range(1_000))  # 100 Hz for 10 s
    assert admitted == 100


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=1_000),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0, max_value=2.0), min_size=1, max_size=300),
)
def test_never_more_than_burst_plus_rate_times_window(
    rate: float, burst: int, gaps: list[float]
) -> None:
    gate = Gcra(Limit(rate=rate, burst=burst))
    now, admitted = 1_000.0, []
    for gap in gaps:
        now += gap
        if gate.check(now)[0]:
            admitted.append(now)
    for i in range(len(admitted)):
        for j in range(i, len(admitted)):
            window = admitted[j] - admitted[i]
            assert j - i + 1 <= burst + rate * window + 1e-6


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=1_000),
    burst=st.integers(min_value=1, max_value=50),
    idle=st.floats(min_value=0, max_value=100),
)
def test_an_idle_bucket_refills_to_a_full_burst(rate: float, burst: int, idle: float) -> None:
    gate = Gcra(Limit(rate=rate, burst=burst))
    while gate.check(0.0)[0]:
        pass
    later = idle + burst / rate
    assert all(gate.check(later)[0] for _ in range(burst))


def test_keys_are_independent() -> None:
    limiter = KeyedLimiter(capacity=10)
    rate = Rate.of(Limit(rate=1, burst=1))
    assert limiter.check("a", 0.0, rate)[0]
    assert not limiter.check("a", 0.0, rate)[0]
    assert limiter.check("b", 0.0, rate)[0]


def test_key_table_is_bounded_and_evicts_the_least_recently_used() -> None:
    limiter = KeyedLimiter(capacity=3)
    rate = Rate.of(Limit(rate=1, burst=1))
    for key in ("a", "b", "c"):
        limiter.check(key, 0.0, rate)
    limiter.check("a", 0.0, rate)  # touch a: b is now the oldest
    limiter.check("d", 0.0, rate)
    assert len(limiter) == 3
    assert not limiter.check("a", 0.0, rate)[0]  # a kept its state (still in debt)
    assert limiter.check("b", 0.0, rate)[0]  # b was evicted and starts fresh


@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity_must_be_positive(capacity: int) -> None:
    with pytest.raises(ValueError):
        KeyedLimiter(capacity)
