"""Provider records: convergence, expiry, bounds."""

from __future__ import annotations

from marketplace_node.providers import ProviderRow, ProviderTable


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
