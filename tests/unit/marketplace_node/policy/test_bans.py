"""Ban tables: CIDR matching for IPv4/IPv6, monotonic expiry immune to wall-clock jumps, records."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marketplace_node.policy import bans
from marketplace_node.policy.bans import Ban, BanTable
from marketplace_protocol.admin import BanEntry, LocalBan
from marketplace_protocol.clock import FakeClock

PEER = "peer-aaaaaaaaaaaa"


def net_ban(cidr: str, deadline: float | None = None, reason: str = "r") -> Ban:
    network = ipaddress.ip_network(cidr, strict=False)
    return Ban(peer_id=None, network=network, reason=reason, source="t", deadline=deadline)


def lookup(table: BanTable, ip: str, now: float = 0.0) -> Ban | None:
    address = bans.parse_ip(ip)
    assert address is not None
    return table.address(address, now)


@pytest.mark.parametrize(
    ("cidr", "ip", "banned"),
    [
        ("10.0.0.0/8", "10.255.1.2", True),
        ("10.0.0.0/8", "11.0.0.1", False),
        ("192.168.1.7/32", "192.168.1.7", True),
        ("192.168.1.7/32", "192.168.1.8", False),
        ("0.0.0.0/0", "8.8.8.8", True),
        ("0.0.0.0/0", "::1", False),
        ("2001:db8::/32", "2001:db8:ffff::1", True),
        ("2001:db8::/32", "2001:db9::1", False),
        ("2001:db8::5/128", "2001:db8::5", True),
        ("2001:db8::5/128", "2001:db8::6", False),
        ("::/0", "fe80::1", True),
        ("::/0", "127.0.0.1", False),
        ("10.1.2.3/16", "10.1.200.1", True),  # host bits in the CIDR are ignored
        ("10.0.0.0/8", "::ffff:10.0.0.1", True),  # IPv4-mapped IPv6 is the IPv4 address
    ],
)
def test_cidr_matching(cidr: str, ip: str, banned: bool) -> None:
    assert (lookup(BanTable([net_ban(cidr)]), ip) is not None) is banned


@settings(max_examples=200, deadline=None)
@given(
    nets=st.lists(
        st.one_of(
            st.ip_addresses(v=4).map(lambda a: (a, 4)), st.ip_addresses(v=6).map(lambda a: (a, 6))
        ).flatmap(lambda av: st.tuples(st.just(av[0]), st.integers(0, 32 if av[1] == 4 else 128))),
        max_size=30,
    ),
    probes=st.lists(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), min_size=1, max_size=30),
)
def test_lookup_agrees_with_a_scan_of_every_ban(
    nets: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]],
    probes: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> None:
    networks = [ipaddress.ip_network(f"{addr}/{plen}", strict=False) for addr, plen in nets]
    table = BanTable(net_ban(str(n)) for n in networks)
    for probe in probes:
        if isinstance(probe, ipaddress.IPv6Address) and probe.ipv4_mapped is not None:
            continue
        expected = any(probe.version == n.version and probe in n for n in networks)
        assert (table.address(probe, 0.0) is not None) is expected


def test_peer_ban_is_exact() -> None:
    table = BanTable([Ban(PEER, None, "r", "t", deadline=None)])
    assert table.peer(PEER, 0.0) is not None
    assert table.peer(PEER + "x", 0.0) is None
    assert table.peer(PEER[:-1], 0.0) is None


def test_ban_is_lifted_exactly_at_its_deadline() -> None:
    table = BanTable([Ban(PEER, None, "r", "t", deadline=100.0), net_ban("10.0.0.0/8", 100.0)])
    assert table.peer(PEER, 99.999) is not None
    assert lookup(table, "10.0.0.1", 99.999) is not None
    assert table.peer(PEER, 100.0) is None
    assert lookup(table, "10.0.0.1", 100.0) is None


@pytest.mark.parametrize("jump_hours", [-48, -3, 3, 48])
def test_policy_expiry_ignores_wall_clock_jumps_after_apply(jump_hours: int) -> None:
    clock = FakeClock()
    expires = datetime.fromtimestamp(clock.wall(), tz=UTC) + timedelta(seconds=600)
    entry = BanEntry(peer_id=PEER, reason="spam", expires_at=expires)
    table = bans.fleet_bans([entry], now_monotonic=clock.monotonic(), now_wall=clock.wall())
    clock.set_wall(clock.wall() + jump_hours * 3_600)
    clock.advance(599.5)
    assert table.peer(PEER, clock.monotonic()) is not None
    clock.advance(0.5)
    assert table.peer(PEER, clock.monotonic()) is None


def test_deadline_conversion_clamps_both_ways() -> None:
    now_wall = 1_700_000_000.0
    past = datetime.fromtimestamp(now_wall - 10, tz=UTC)
    far = datetime(9999, 1, 1, tzinfo=UTC)
    assert bans.deadline_from_wall(past, now_monotonic=5.0, now_wall=now_wall) == 5.0
    assert bans.deadline_from_wall(far, now_monotonic=5.0, now_wall=now_wall) == (
        5.0 + bans.MAX_BAN_SECONDS
    )
    assert bans.deadline_from_wall(None, now_monotonic=5.0, now_wall=now_wall) is None


def test_expired_policy_entries_are_left_out() -> None:
    clock = FakeClock()
    gone = datetime.fromtimestamp(clock.wall() - 1, tz=UTC)
    table = bans.fleet_bans(
        [BanEntry(peer_id=PEER, expires_at=gone), BanEntry(cidr="10.0.0.0/8")],
        now_monotonic=clock.monotonic(),
        now_wall=clock.wall(),
    )
    assert len(table) == 1
    assert lookup(table, "10.9.9.9") is not None


def test_longer_ban_wins_when_the_same_target_is_banned_twice() -> None:
    table = BanTable()
    table.add(Ban(PEER, None, "long", "t", deadline=500.0))
    table.add(Ban(PEER, None, "short", "t", deadline=100.0))
    ban = table.peer(PEER, 200.0)
    assert ban is not None
    assert ban.reason == "long"
    table.add(Ban(PEER, None, "forever", "t", deadline=None))
    assert table.peer(PEER, 1e12) is not None


def test_prune_forgets_expired_bans_only() -> None:
    table = BanTable(
        [
            net_ban("10.0.0.0/8", 10.0),
            net_ban("2001:db8::/32", 50.0),
            Ban(PEER, None, "r", "t", 10.0),
        ]
    )
    assert table.prune(20.0) == 2
    assert len(table) == 1
    assert lookup(table, "2001:db8::1", 20.0) is not None


def test_records_survive_a_restart_with_a_new_monotonic_base() -> None:
    before = FakeClock(monotonic=5_000.0, wall=1_700_000_000.0)
    table = BanTable([Ban(PEER, None, "bad_signature", "node-a", deadline=5_600.0, offences=7)])
    table.add(net_ban("10.0.0.1/32", 5_060.0))
    records = bans.to_records(table, now_monotonic=before.monotonic(), now_wall=before.wall())
    assert {r.offences for r in records} >= {7}

    # The process restarts 30 s later: the monotonic clock starts from scratch.
    after = FakeClock(monotonic=12.0, wall=before.wall() + 30)
    restored = bans.from_records(
        records, source="node-a", now_monotonic=after.monotonic(), now_wall=after.wall()
    )
    by_target = {b.target: b for b in restored}
    assert by_target[PEER].deadline == pytest.approx(12.0 + 570.0)
    assert by_target["10.0.0.1/32"].deadline == pytest.approx(12.0 + 30.0)
    assert by_target[PEER].offences == 7


def test_records_that_expired_while_down_or_are_corrupt_are_dropped() -> None:
    now_wall = 1_700_000_000.0
    at = datetime.fromtimestamp(now_wall - 100, tz=UTC)
    records = [
        LocalBan(peer_id=PEER, reason="r", offences=1, banned_at=at, expires_at=at),
        LocalBan(cidr="not-a-network", reason="r", offences=1, banned_at=at),
        LocalBan(reason="no target", offences=1, banned_at=at),
        LocalBan(cidr="10.0.0.0/8", reason="kept", offences=1, banned_at=at),
    ]
    restored = bans.from_records(records, source="n", now_monotonic=0.0, now_wall=now_wall)
    assert [b.reason for b in restored] == ["kept"]


@pytest.mark.parametrize("text", ["", "unix:/tmp/sock", "10.0.0.256", "localhost"])
def test_non_addresses_are_not_parsed(text: str) -> None:
    assert bans.parse_ip(text) is None
