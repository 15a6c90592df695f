"""The peer table's eviction rule and staleness."""

from __future__ import annotations

from marketplace_node.peers import PeerTable


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


def test_a_leaving_removes_only_the_incarnation_met_before_it() -> None:
    table = PeerTable(capacity=4)
    table.seen("old", "http://o:1", 0.0, wall=1_000.4)
    table.seen("new", "http://n:1", 0.0, wall=1_000.6)
    assert not table.left("new", 999)  # announced before we met it: a reborn node's old news
    assert "new" in table
    assert table.left("old", 1_000)  # the same second as our meeting counts as after it
    assert "old" not in table
    assert not table.left("ghost", 2_000)
