"""Reputation: failures and latency lower it, the fallback order is total, the book is bounded."""

from __future__ import annotations

import math

import pytest
from marketplace_node.reputation import (
    Reputation,
    ReputationBook,
    fallback_order,
    record_failure,
    record_success,
)


def test_failures_lower_and_successes_raise_reputation() -> None:
    start = Reputation()
    assert record_failure(start).score < start.score < record_success(start, 0.01).score


def test_latency_lowers_reputation() -> None:
    fast, slow = record_success(Reputation(), 0.01), record_success(Reputation(), 2.0)
    assert slow.score < fast.score


def test_non_finite_latency_is_ignored() -> None:
    rep = record_success(record_success(Reputation(), 0.1), math.nan)
    assert math.isfinite(rep.score)
    assert rep.latency == pytest.approx(0.1)


def test_fallback_order_is_total_with_ties_and_nan() -> None:
    candidates = [("c", 0.5), ("a", 0.5), ("b", math.nan), ("d", 0.9)]
    assert fallback_order(candidates) == ["d", "a", "c", "b"]
    assert fallback_order(reversed(candidates)) == ["d", "a", "c", "b"]


def test_reputation_book_is_bounded() -> None:
    book = ReputationBook(maxsize=2)
    for peer in "abc":
        book.failure(peer)
    assert book.get("a") == Reputation()  # forgotten: back to the prior
    assert book.get("c").failures == 1
