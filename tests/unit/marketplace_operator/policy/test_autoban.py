"""Local bans become fleet-wide auto entries: threshold, provenance, expiry, bounded size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from marketplace_operator.model.banlist import BanListEntry
from marketplace_operator.policy.autoban import (
    DEFAULT_MAX_TTL,
    NodeReport,
    auto_entries,
    bans_by_reason,
    evict,
    required_nodes,
)
from marketplace_protocol.admin import LocalBan

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
A, B, C = "peerAAAAAAAA", "peerBBBBBBBB", "peerCCCCCCCC"


def local(
    peer: str | None = A,
    *,
    reason: str = "rate_limited",
    offences: int = 3,
    ago: float = 60,
    ttl: float | None = 600,
    cidr: str | None = None,
) -> LocalBan:
    return LocalBan(
        peer_id=None if cidr else peer,
        cidr=cidr,
        reason=reason,
        offences=offences,
        banned_at=NOW - timedelta(seconds=ago),
        expires_at=None if ttl is None else NOW + timedelta(seconds=ttl),
    )


def test_one_node_is_enough_by_default_with_provenance() -> None:
    (entry,) = auto_entries([NodeReport("n1", [local()])], [], now=NOW, fleet_size=3)
    assert entry.peer_id == A
    assert entry.expires_at == NOW + timedelta(seconds=600)
    assert entry.reason == "auto: rate_limited"
    prov = entry.provenance
    assert prov is not None
    assert prov.nodes == ["n1"]
    assert prov.node_count == 1
    assert prov.first_seen == prov.last_seen == NOW - timedelta(seconds=60)
    assert prov.offences == 3
    assert prov.reasons == ["rate_limited"]


def test_k_of_n_threshold() -> None:
    one = [NodeReport("n1", [local()]), NodeReport("n2", [])]
    two = [NodeReport("n1", [local()]), NodeReport("n2", [local(reason="bad_signature", ago=10)])]
    assert auto_entries(one, [], now=NOW, fleet_size=3, threshold=2) == []
    (entry,) = auto_entries(two, [], now=NOW, fleet_size=3, threshold=2)
    assert entry.provenance is not None
    assert entry.provenance.nodes == ["n1", "n2"]
    assert entry.provenance.offences == 6
    assert entry.provenance.reasons == ["bad_signature", "rate_limited"]
    assert entry.provenance.last_seen == NOW - timedelta(seconds=10)


def test_required_nodes_never_exceeds_the_fleet() -> None:
    assert required_nodes(3, 2) == 2
    assert required_nodes(3, 5) == 3
    assert required_nodes(0, 5) == 1
    assert required_nodes(2, 0) == 1


def test_expiry_is_the_latest_and_until_lifted_is_capped() -> None:
    reports = [NodeReport("n1", [local(ttl=60)]), NodeReport("n2", [local(ttl=None)])]
    (entry,) = auto_entries(reports, [], now=NOW, fleet_size=2)
    assert entry.expires_at == NOW + DEFAULT_MAX_TTL


def test_expired_local_bans_are_ignored() -> None:
    assert auto_entries([NodeReport("n1", [local(ttl=-1)])], [], now=NOW, fleet_size=1) == []


def test_provenance_survives_nodes_forgetting_and_offences_never_drop() -> None:
    (first,) = auto_entries(
        [NodeReport("n1", [local(offences=9, ago=300)])], [], now=NOW, fleet_size=2
    )
    # Next round: n1 restarted and forgot; n2 now reports the same peer with fewer offences.
    (second,) = auto_entries(
        [NodeReport("n1", []), NodeReport("n2", [local(offences=2, ago=5, ttl=60)])],
        [first],
        now=NOW,
        fleet_size=2,
    )
    prov = second.provenance
    assert prov is not None
    assert prov.nodes == ["n1", "n2"]
    assert prov.first_seen == NOW - timedelta(seconds=300)
    assert prov.last_seen == NOW - timedelta(seconds=5)
    assert prov.offences == 9
    assert second.expires_at == first.expires_at  # the longer expiry is kept


def test_a_promoted_entry_stays_until_it_expires_even_below_threshold() -> None:
    (entry,) = auto_entries(
        [NodeReport("n1", [local()]), NodeReport("n2", [local()])],
        [],
        now=NOW,
        fleet_size=3,
        threshold=2,
    )
    still = auto_entries([], [entry], now=NOW + timedelta(seconds=599), fleet_size=3, threshold=2)
    assert [e.peer_id for e in still] == [A]
    assert auto_entries([], [entry], now=NOW + timedelta(seconds=600), fleet_size=3) == []


def test_networks_are_canonical_targets() -> None:
    reports = [
        NodeReport("n1", [local(cidr="10.1.2.3/8")]),
        NodeReport("n2", [local(cidr="10.0.0.0/8")]),
    ]
    (entry,) = auto_entries(reports, [], now=NOW, fleet_size=2, threshold=2)
    assert entry.cidr == "10.0.0.0/8"


def _entry(peer: str, hours: float | None) -> BanListEntry:
    return BanListEntry(
        peer_id=peer, expires_at=None if hours is None else NOW + timedelta(hours=hours)
    )


def test_eviction_drops_expired_then_keeps_the_latest_expiry() -> None:
    entries = [_entry(A, 1), _entry(B, -1), _entry(C, 5), _entry("peerDDDDDDDD", None)]
    kept = evict(entries, now=NOW, capacity=2)
    assert [e.peer_id for e in kept] == [C, "peerDDDDDDDD"]  # sorted by target


@given(
    st.lists(st.tuples(st.integers(0, 50), st.integers(-5, 30)), max_size=60),
    st.integers(1, 20),
)
def test_eviction_is_bounded_and_keeps_the_longest(
    specs: list[tuple[int, int]], capacity: int
) -> None:
    entries = {f"peer{i:08d}": _entry(f"peer{i:08d}", h) for i, h in specs}
    kept = evict(entries.values(), now=NOW, capacity=capacity)
    assert len(kept) <= capacity
    assert all(e.expires_at is not None and e.expires_at > NOW for e in kept)
    live = [e for e in entries.values() if e.expires_at is not None and e.expires_at > NOW]
    assert len(kept) == min(capacity, len(live))
    if kept:
        shortest_kept = min(e.expires_at for e in kept if e.expires_at is not None)
        dropped = [e for e in live if e not in kept]
        assert all(e.expires_at is not None and e.expires_at <= shortest_kept for e in dropped)
    assert kept == sorted(kept, key=lambda e: e.target)


def test_auto_list_is_bounded_by_capacity() -> None:
    reports = [
        NodeReport("n1", [local(f"peer{i:08d}", ttl=100 + i) for i in range(50)]),
    ]
    kept = auto_entries(reports, [], now=NOW, fleet_size=1, capacity=10)
    assert [e.peer_id for e in kept] == [f"peer{i:08d}" for i in range(40, 50)]


def test_bans_by_reason() -> None:
    reports = [
        NodeReport("n1", [local(A, reason="spam"), local(B, reason="spam"), local(C, reason="")]),
    ]
    assert bans_by_reason(auto_entries(reports, [], now=NOW, fleet_size=1)) == {
        "spam": 2,
        "unknown": 1,
    }
