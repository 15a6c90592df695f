"""Per-peer circuit breakers: open after consecutive failures, back off, probe, close."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marketplace_node.breaker import (
    Breaker,
    BreakerConfig,
    Breakers,
    Event,
    Phase,
    admit,
    transition,
)
from marketplace_protocol import errors
from marketplace_protocol.clock import FakeClock

CONFIG = BreakerConfig(failures_to_open=3, open_seconds=1.0, max_open_seconds=8.0)
PEER = "http://127.1.0.7:7070"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breakers(clock: FakeClock) -> Breakers:
    return Breakers(clock, CONFIG)


def fail(breakers: Breakers, times: int) -> None:
    for _ in range(times):
        breakers.check(PEER)
        breakers.failure(PEER)


def test_opens_after_consecutive_failures_only(breakers: Breakers) -> None:
    fail(breakers, 2)
    breakers.check(PEER)
    breakers.success(PEER)  # a success resets the count
    fail(breakers, 2)
    breakers.check(PEER)
    breakers.failure(PEER)
    with pytest.raises(errors.UpstreamFailed) as caught:
        breakers.check(PEER)
    assert caught.value.retryable
    assert breakers.state(PEER).phase is Phase.OPEN


def test_one_probe_after_the_open_period_then_close_on_success(
    clock: FakeClock, breakers: Breakers
) -> None:
    fail(breakers, 3)
    clock.advance(0.999)
    with pytest.raises(errors.UpstreamFailed):
        breakers.check(PEER)
    clock.advance(0.001)
    breakers.check(PEER)  # the probe
    with pytest.raises(errors.UpstreamFailed):
        breakers.check(PEER)  # only one probe at a time
    breakers.success(PEER)
    assert breakers.state(PEER) == Breaker()
    assert len(breakers) == 0  # healthy peers cost nothing


def test_open_period_doubles_up_to_the_cap(clock: FakeClock, breakers: Breakers) -> None:
    fail(breakers, 3)
    periods = []
    for _ in range(6):
        start = clock.monotonic()
        periods.append(breakers.state(PEER).until - start)
        clock.advance(breakers.state(PEER).until - start)
        breakers.check(PEER)  # probe
        breakers.failure(PEER)  # and it fails again
    assert periods == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_an_abandoned_probe_expires(clock: FakeClock, breakers: Breakers) -> None:
    fail(breakers, 3)
    clock.advance(1.0)
    breakers.check(PEER)  # the probe's caller is cancelled and never reports
    clock.advance(1.0)
    breakers.check(PEER)  # a new probe may go


def test_peers_are_independent_and_bounded(clock: FakeClock) -> None:
    breakers = Breakers(clock, CONFIG, capacity=2)
    for peer in ("a", "b", "c"):
        breakers.failure(peer)
    assert len(breakers) == 2
    assert breakers.state("a") == Breaker()  # forgotten: least recently touched
    assert breakers.state("c").failures == 1


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(Event), st.floats(min_value=0, max_value=5)), max_size=60
    )
)
def test_open_breakers_never_admit_before_their_deadline(events: list[tuple[Event, float]]) -> None:
    breaker, now = Breaker(), 0.0
    for event, gap in events:
        now += gap
        allowed, after = admit(breaker, now, CONFIG)
        if breaker.phase is not Phase.CLOSED and now < breaker.until:
            assert not allowed
        if allowed:
            breaker = transition(after, event, now, CONFIG)
        assert breaker.until <= now + CONFIG.max_open_seconds
