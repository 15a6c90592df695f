"""Compact keys and the ring-buffer TTL set: expiry, eviction order, discard, flat memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketplace_node.compact import TtlSet, key
from marketplace_protocol.clock import FakeClock


def test_keys_tell_strings_and_tuples_apart() -> None:
    assert key(("search", "a")) == key(("search", "a"))
    assert key(("search", "a")) != key(("fetch", "a"))
    assert key("a" * 64) != key("a" * 63 + "b")


def test_a_key_is_remembered_for_ttl_then_forgotten() -> None:
    clock = FakeClock()
    cache = TtlSet(maxsize=10, ttl=10, timer=clock.monotonic)
    cache.add("a")
    clock.advance(9.9)
    assert "a" in cache
    clock.advance(0.1)
    assert "a" not in cache
    assert len(cache) == 0


def test_a_full_set_forgets_the_oldest_first() -> None:
    clock = FakeClock()
    cache = TtlSet(maxsize=3, ttl=100, timer=clock.monotonic)
    for name in "abc":
        cache.add(name)
        clock.advance(1)
    cache.add("a")  # present: no new slot, its deadline stands
    cache.add("d")
    assert "a" not in cache
    assert [name in cache for name in "bcd"] == [True, True, True]
    assert len(cache) == 3


def test_discard_lets_a_key_back_in() -> None:
    clock = FakeClock()
    cache = TtlSet(maxsize=2, ttl=100, timer=clock.monotonic)
    cache.add("a")
    cache.discard("a")
    assert "a" not in cache
    cache.add("a")
    assert "a" in cache


@given(st.lists(st.integers(0, 50), max_size=300))
def test_never_more_than_maxsize_and_the_newest_are_kept(values: list[int]) -> None:
    clock = FakeClock()
    cache = TtlSet(maxsize=8, ttl=1_000, timer=clock.monotonic)
    for value in values:
        cache.add(value)
    assert len(cache) <= 8
    if values:
        assert values[-1] in cache


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TtlSet(maxsize=0, ttl=1, timer=FakeClock().monotonic)
