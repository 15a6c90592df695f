"""Pure decisions: reputation, the peer table's eviction rule, gossip targets, subscriptions."""

from __future__ import annotations

import asyncio
import math
import random

import pytest
from marketplace_node import limits
from marketplace_node.clock import FakeClock
from marketplace_node.gossip import SeenCache, forward_targets
from marketplace_node.model import Query
from marketplace_node.peers import PeerTable
from marketplace_node.providers import ProviderRow, ProviderTable
from marketplace_node.reputation import (
    Reputation,
    ReputationBook,
    fallback_order,
    record_failure,
    record_success,
)
from marketplace_node.subscribe import SubscriptionHub
from marketplace_node.testing import package, package_announcement


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


def test_full_table_evicts_the_least_recently_seen_unpinned_peer() -> None:
    table = PeerTable(capacity=3)
    table.seen("pinned", "http://p:1", 0.0, pinned=True)
    table.seen("old", "http://o:1", 1.0)
    table.seen("recent", "http://r:1", 5.0)
    assert table.seen("new", "http://n:1", 6.0)
    assert {p.peer_id for p in table.all()} == {"pinned", "recent", "new"}


def test_a_table_full_of_pinned_peers_refuses_newcomers() -> None:
    table = PeerTable(capacity=1)
    table.seen("pinned", "http://p:1", 0.0, pinned=True)
    assert not table.seen("new", "http://n:1", 1.0)
    assert "new" not in table


def test_stale_needs_both_failures_and_silence() -> None:
    table = PeerTable(capacity=4, max_failures=2, stale_after=10.0)
    table.seen("a", "http://a:1", 0.0)
    table.failed("a")
    table.failed("a")
    assert table.stale(5.0) == []
    assert table.stale(11.0) == ["a"]
    table.seen("a", "http://a:1", 11.0)
    assert table.stale(30.0) == []


def test_forward_excludes_sender_origin_and_self_and_stops_at_hop_limit() -> None:
    table = PeerTable(capacity=10)
    ann = package_announcement(package())
    for peer in ["s", ann.origin, "me", "x", "y", "z"]:
        table.seen(peer, f"http://{len(peer)}:1", 0.0)
    rng = random.Random(1)
    targets = forward_targets(ann, table, rng, fanout=5, hop_limit=3, sender="s", self_id="me")
    assert {t.peer_id for t in targets} == {"x", "y", "z"}
    hopped = ann.model_copy(update={"hops": 3})
    assert (
        forward_targets(hopped, table, rng, fanout=5, hop_limit=3, sender=None, self_id="me") == []
    )


def test_seen_cache_expires() -> None:
    clock = FakeClock()
    seen = SeenCache(clock, ttl=10)
    seen.add("a")
    assert "a" in seen
    clock.advance(11)
    assert "a" not in seen


async def test_slow_subscriber_overflows_and_is_told_to_resume() -> None:
    hub = SubscriptionHub()
    slow = hub.open(Query())
    picky = hub.open(Query(keywords=("nomatch",)))
    for seq in range(1, limits.SUBSCRIBER_QUEUE_MAX + 2):
        hub.publish(seq, package(f"p{seq}"))
    assert slow.overflowed
    assert not picky.overflowed
    drained = []
    while not slow.queue.empty():
        drained.append(slow.queue.get_nowait())
    assert drained[-1] is None  # the end marker: the stream closes with a resumable cursor
    assert picky.queue.empty()
    await asyncio.sleep(0)


def _row(peer: str, updated: int, package: str = "p", expires: float = 100.0) -> ProviderRow:
    return ProviderRow(package, peer, f"http://{peer}:1", expires, updated)


def test_provider_records_converge_whatever_the_arrival_order() -> None:
    events = [("set", _row("a", 1)), ("drop", "a", 2), ("set", _row("a", 3)), ("set", _row("b", 1))]
    outcomes = set()
    for order in (events, list(reversed(events)), [events[2], events[0], events[3], events[1]]):
        table = ProviderTable()
        for event in order:
            if event[0] == "set":
                table.set(event[1])  # type: ignore[arg-type]
            else:
                table.drop("p", event[1], event[2])  # type: ignore[arg-type]
        outcomes.add(tuple((r.peer_id, r.updated) for r in table.live("p", 0.0)))
    assert outcomes == {(("a", 3), ("b", 1))}


def test_expired_records_are_not_live_and_sole_providers_are_found() -> None:
    table = ProviderTable()
    table.set(_row("a", 1, expires=10.0))
    table.set(_row("a", 1, package="q"))
    table.set(_row("b", 1, package="q"))
    assert table.live("p", 11.0) == []
    assert table.sole("a") == ["p"]
    table.drop_peer("a", 5)
    assert table.peers_of("q") == {"b"}
    assert table.count("p", 0.0) == 0


def test_a_full_package_keeps_the_longest_lived_providers() -> None:
    table = ProviderTable(per_package=2)
    assert table.set(_row("a", 1, expires=10.0))
    assert table.set(_row("b", 1, expires=20.0))
    assert not table.set(_row("c", 1, expires=5.0))  # would expire first: refused
    assert table.set(_row("d", 1, expires=30.0))  # replaces "a", the soonest to expire
    assert table.peers_of("p") == {"b", "d"}
    assert table.prune(25.0) == 1
    assert table.peers_of("p") == {"d"}


def test_provider_records_of_too_many_packages_forget_the_least_recently_set() -> None:
    table = ProviderTable(max_packages=3)
    for pid in ("p1", "p2", "p3"):
        table.set(_row("a", 1, package=pid))
    table.set(_row("b", 2, package="p1"))  # a re-announced package moves to the young end
    table.set(_row("a", 1, package="p4"))  # a fourth evicts p2, the least recently set
    assert len(table) == 3
    assert table.peers_of("p2") == frozenset()
    assert table.peers_of("p1") == {"a", "b"}
    for i in range(1_000):
        table.set(_row("a", 1, package=f"flood-{i}"))
    assert len(table) == 3
