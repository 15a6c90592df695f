"""The door: bans, per-peer then global limits, escalation to local bans, atomic policy apply."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from marketplace_node import limits
from marketplace_node.metrics import NodeMetrics
from marketplace_node.policy import compiled as compiled_module
from marketplace_node.policy import enforcer as enforcer_module
from marketplace_node.policy.compiled import Change, CompiledPolicy, check_version, policy_hash
from marketplace_node.policy.enforcer import PolicyEnforcer
from marketplace_node.policy.escalation import Offence
from marketplace_protocol import errors
from marketplace_protocol.admin import (
    BanEntry,
    Escalation,
    Limit,
    LocalBan,
    Operation,
    PolicyDocument,
    RateLimits,
)
from marketplace_protocol.clock import FakeClock
from prometheus_client import CollectorRegistry

NODE = "node-self-000000"
PEER = "peer-aaaaaaaaaaaa"
HONEST = "peer-bbbbbbbbbbbb"
IP = "10.1.2.3"


def doc(version: int = 1, **limits: object) -> PolicyDocument:
    fields: dict[str, object] = {
        "per_peer": {Operation.SEARCH: Limit(rate=1, burst=2)},
        "global_": Limit(rate=1_000, burst=1_000),
        "escalation": Escalation(
            threshold=3, window_seconds=60, first_ban_seconds=30, max_ban_seconds=300
        ),
    }
    rate_limits = RateLimits.model_validate({**fields, **limits})
    return PolicyDocument(version=version, rate_limits=rate_limits)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def enforcer(clock: FakeClock) -> PolicyEnforcer:
    door = PolicyEnforcer(clock, node_id=NODE)
    door.apply(doc())
    return door


# -- check_version: the pure rule ---------------------------------------------------


@pytest.mark.parametrize(
    ("applied", "applied_hash", "version", "digest", "outcome"),
    [
        (None, "", 0, "h", Change.APPLY),
        (3, "h", 4, "x", Change.APPLY),
        (3, "h", 3, "h", Change.UNCHANGED),
        (3, "h", 3, "x", errors.Conflict),
        (3, "h", 2, "h", errors.StalePolicy),
    ],
)
def test_check_version(
    applied: int | None, applied_hash: str, version: int, digest: str, outcome: object
) -> None:
    if isinstance(outcome, Change):
        assert check_version(applied, applied_hash, version, digest) is outcome
    else:
        with pytest.raises(outcome):  # type: ignore[call-overload]
            check_version(applied, applied_hash, version, digest)


def test_stale_policy_is_a_conflict_with_its_own_code() -> None:
    with pytest.raises(errors.Conflict) as caught:
        check_version(5, "h", 4, "h")
    assert caught.value.code == "stale_policy"
    assert caught.value.http_status == 409


def test_hash_is_the_documents_own_or_a_content_digest() -> None:
    assert policy_hash(PolicyDocument(version=1, hash="abc")) == "abc"
    a, b = policy_hash(doc(1)), policy_hash(doc(2))
    assert a == b
    assert a.startswith("sha256:")
    assert policy_hash(doc(1, max_pending_queries=7)) != a


# -- the door -----------------------------------------------------------------------


def test_per_peer_limit_refuses_with_retry_after(enforcer: PolicyEnforcer) -> None:
    enforcer.admit(PEER, IP, Operation.SEARCH)
    enforcer.admit(PEER, IP, Operation.SEARCH)
    with pytest.raises(errors.RateLimited) as caught:
        enforcer.admit(PEER, IP, Operation.SEARCH)
    assert caught.value.retry_after == pytest.approx(1.0)
    enforcer.admit(HONEST, IP, Operation.SEARCH)  # another peer on the same address is fine
    enforcer.admit(PEER, IP, Operation.FETCH)  # another operation has its own budget


def test_copies_have_their_own_budget_and_bans_still_win(enforcer: PolicyEnforcer) -> None:
    tight = doc(2, per_peer={Operation.FETCH: Limit(rate=1, burst=1)})
    enforcer.apply(tight)
    enforcer.admit(PEER, IP, Operation.FETCH)
    with pytest.raises(errors.RateLimited):  # the peer's fetch limit is spent...
        enforcer.admit(PEER, IP, Operation.FETCH)
    copies = limits.COPY_LIMIT.burst
    for _ in range(copies):  # ...its copies are not charged to it
        enforcer.admit(PEER, IP, Operation.FETCH, copy=True)
    with pytest.raises(errors.RateLimited) as caught:  # and are bounded on their own
        enforcer.admit(PEER, IP, Operation.FETCH, copy=True)
    assert caught.value.retry_after == pytest.approx(1 / limits.COPY_LIMIT.rate)
    enforcer.apply(tight.model_copy(update={"version": 3, "bans": [BanEntry(peer_id=HONEST)]}))
    with pytest.raises(errors.PeerBanned):
        enforcer.admit(HONEST, IP, Operation.FETCH, copy=True)


def test_unauthenticated_requests_are_limited_by_address(enforcer: PolicyEnforcer) -> None:
    enforcer.admit(None, IP, Operation.SEARCH)
    enforcer.admit(None, IP, Operation.SEARCH)
    with pytest.raises(errors.RateLimited):
        enforcer.admit(None, IP, Operation.SEARCH)
    enforcer.admit(None, "10.1.2.4", Operation.SEARCH)


def test_anonymous_ipv6_clients_are_limited_and_banned_per_64(enforcer: PolicyEnforcer) -> None:
    enforcer.admit(None, "2001:db8:1:2::1", Operation.SEARCH)
    enforcer.admit(None, "2001:db8:1:2::ffff", Operation.SEARCH)
    with pytest.raises(errors.RateLimited):  # another address of the same /64
        enforcer.admit(None, "2001:db8:1:2:abcd::9", Operation.SEARCH)
    enforcer.admit(None, "2001:db8:1:3::1", Operation.SEARCH)  # the next /64 is someone else
    enforcer.record(None, "2001:db8:1:2::7", Offence.LOW_REPUTATION)
    (ban,) = enforcer.local_bans().bans
    assert ban.cidr == "2001:db8:1:2::/64"
    with pytest.raises(errors.PeerBanned):
        enforcer.admit(PEER, "2001:db8:1:2::99", Operation.FETCH)


def test_global_limit_applies_across_peers(clock: FakeClock) -> None:
    door = PolicyEnforcer(clock, node_id=NODE)
    door.apply(doc(global_=Limit(rate=1, burst=3)))
    for i in range(3):
        door.admit(f"peer-{i:012d}", IP, Operation.SEARCH)
    with pytest.raises(errors.RateLimited) as caught:
        door.admit("peer-999999999999", IP, Operation.SEARCH)
    assert "node" in caught.value.message


def test_a_flooder_refused_per_peer_does_not_spend_the_global_budget(clock: FakeClock) -> None:
    door = PolicyEnforcer(clock, node_id=NODE)
    policy = doc(global_=Limit(rate=1, burst=3))
    door.apply(
        policy.model_copy(
            update={
                "rate_limits": policy.rate_limits.model_copy(
                    update={"escalation": Escalation(threshold=1_000)}
                )
            }
        )
    )
    for _ in range(100):
        with contextlib.suppress(errors.RateLimited):
            door.admit(PEER, IP, Operation.SEARCH)
    door.admit(HONEST, "10.9.9.9", Operation.SEARCH)


def test_fleet_bans_by_peer_id_and_cidr(clock: FakeClock, enforcer: PolicyEnforcer) -> None:
    bans = [
        BanEntry(peer_id=PEER, reason="spam"),
        BanEntry(cidr="192.168.0.0/16", reason="botnet"),
        BanEntry(cidr="2001:db8::/32", reason="botnet6"),
    ]
    enforcer.apply(doc(2).model_copy(update={"bans": bans}))
    with pytest.raises(errors.PeerBanned) as caught:
        enforcer.admit(PEER, "8.8.8.8", Operation.SEARCH)
    assert caught.value.details == {"reason": "spam"}
    with pytest.raises(errors.PeerBanned):
        enforcer.admit(HONEST, "192.168.4.5", Operation.SEARCH)
    with pytest.raises(errors.PeerBanned):
        enforcer.admit(None, "2001:db8::77", Operation.GOSSIP)
    enforcer.admit(HONEST, "8.8.8.8", Operation.SEARCH)


def test_screen_refuses_banned_networks_without_charging_limits(
    enforcer: PolicyEnforcer,
) -> None:
    enforcer.apply(doc(2).model_copy(update={"bans": [BanEntry(cidr="10.0.0.0/8")]}))
    with pytest.raises(errors.PeerBanned):
        enforcer.screen("10.200.0.1", Operation.GOSSIP)
    for _ in range(10):
        enforcer.screen("192.0.2.1", Operation.SEARCH)
    enforcer.admit(PEER, "192.0.2.1", Operation.SEARCH)  # the burst of 2 is untouched
    enforcer.admit(PEER, "192.0.2.1", Operation.SEARCH)
    enforcer.screen("unix-socket", Operation.SEARCH)


def test_policy_ban_expires_on_the_monotonic_clock(
    clock: FakeClock, enforcer: PolicyEnforcer
) -> None:
    expires = datetime.fromtimestamp(clock.wall(), tz=UTC) + timedelta(seconds=120)
    enforcer.apply(doc(2).model_copy(update={"bans": [BanEntry(peer_id=PEER, expires_at=expires)]}))
    clock.set_wall(clock.wall() + 86_400)  # NTP steps a day forward: the ban stays
    with pytest.raises(errors.PeerBanned):
        enforcer.admit(PEER, IP, Operation.FETCH)
    clock.advance(120)
    enforcer.admit(PEER, IP, Operation.FETCH)


def test_a_new_policy_takes_effect_for_the_next_request(enforcer: PolicyEnforcer) -> None:
    enforcer.admit(PEER, IP, Operation.SEARCH)
    enforcer.admit(PEER, IP, Operation.SEARCH)
    applied = enforcer.apply(doc(2, per_peer={Operation.SEARCH: Limit(rate=1, burst=50)}))
    assert applied.version == 2
    enforcer.admit(PEER, IP, Operation.SEARCH)
    enforcer.apply(doc(3).model_copy(update={"bans": [BanEntry(peer_id=PEER)]}))
    with pytest.raises(errors.PeerBanned):
        enforcer.admit(PEER, IP, Operation.SEARCH)


def test_apply_refuses_stale_and_is_idempotent(enforcer: PolicyEnforcer) -> None:
    enforcer.apply(doc(5))
    again = enforcer.apply(doc(5))
    assert (again.version, again.hash) == (5, enforcer.status.hash)
    with pytest.raises(errors.StalePolicy):
        enforcer.apply(doc(4))
    with pytest.raises(errors.Conflict):
        enforcer.apply(doc(5, max_pending_queries=3))
    assert enforcer.status.version == 5


def test_operations_missing_from_the_document_keep_default_limits(
    enforcer: PolicyEnforcer,
) -> None:
    for _ in range(10):  # the default publish burst is 10
        enforcer.admit(PEER, IP, Operation.PUBLISH)
    with pytest.raises(errors.RateLimited):
        enforcer.admit(PEER, IP, Operation.PUBLISH)


# -- escalation into local bans -----------------------------------------------------


def test_a_flooding_peer_ends_banned_and_the_ban_grows(
    clock: FakeClock, enforcer: PolicyEnforcer
) -> None:
    def flood() -> int:
        for attempt in range(100):
            try:
                enforcer.admit(PEER, IP, Operation.SEARCH)
            except errors.PeerBanned:
                return attempt
            except errors.RateLimited:
                pass
        raise AssertionError("never banned")

    flood()
    (first,) = enforcer.local_bans().bans
    assert first.peer_id == PEER
    assert first.reason == "rate_limited"
    assert first.expires_at == first.banned_at + timedelta(seconds=30)
    clock.advance(30)
    enforcer.admit(PEER, IP, Operation.SEARCH)  # lifted exactly at the deadline
    flood()
    (second,) = enforcer.local_bans().bans
    assert second.expires_at is not None
    assert second.expires_at - second.banned_at == timedelta(seconds=60)
    enforcer.admit(HONEST, IP, Operation.SEARCH)  # a peer id ban is not an address ban


def test_an_anonymous_offender_is_banned_by_address(enforcer: PolicyEnforcer) -> None:
    decision = enforcer.record(None, IP, Offence.LOW_REPUTATION)
    assert decision is not None
    (ban,) = enforcer.local_bans().bans
    assert ban.cidr == "10.1.2.3/32"
    with pytest.raises(errors.PeerBanned):
        enforcer.admit(HONEST, IP, Operation.SEARCH)


def test_a_network_minting_banned_identities_is_banned_itself(enforcer: PolicyEnforcer) -> None:
    for i in range(2):
        enforcer.record(f"sybil-{i:012d}", IP, Offence.BAD_SIGNATURE)  # weight 5, threshold 3
    enforcer.admit("sybil-999999999999", IP, Operation.SEARCH)  # two banned ids: not yet
    enforcer.record("sybil-000000000002", IP, Offence.BAD_SIGNATURE)
    reasons = {(b.peer_id, b.cidr, b.reason) for b in enforcer.local_bans().bans}
    assert (None, "10.1.2.3/32", "banned_identity") in reasons
    with pytest.raises(errors.PeerBanned):
        enforcer.admit("sybil-999999999999", IP, Operation.SEARCH)
    enforcer.admit(HONEST, "10.1.2.4", Operation.SEARCH)  # the neighbour is not affected


def test_local_bans_are_reported_for_persistence_and_restored(clock: FakeClock) -> None:
    saved: list[LocalBan] = []
    door = PolicyEnforcer(clock, node_id=NODE, on_local_ban=saved.append)
    door.apply(doc())
    door.record(PEER, IP, Offence.BAD_SIGNATURE)
    assert [b.peer_id for b in saved] == [PEER]

    later = FakeClock(monotonic=3.0, wall=clock.wall() + 10)  # a restart 10 s later
    reborn = PolicyEnforcer(later, node_id=NODE)
    assert reborn.restore_local_bans(saved) == 1
    with pytest.raises(errors.PeerBanned):
        reborn.admit(PEER, IP, Operation.SEARCH)
    later.advance(19.9)
    with pytest.raises(errors.PeerBanned):
        reborn.admit(PEER, IP, Operation.SEARCH)
    later.advance(0.1)
    reborn.admit(PEER, IP, Operation.SEARCH)


def test_local_bans_are_bounded(clock: FakeClock) -> None:
    door = PolicyEnforcer(clock, node_id=NODE, local_ban_capacity=3)
    door.apply(doc())
    for i in range(10):
        clock.advance(1)
        door.record(f"peer-{i:012d}", f"10.0.0.{i}", Offence.LOW_REPUTATION)
    assert door.status.local_bans == 3
    kept = {b.peer_id for b in door.local_bans().bans}
    assert kept == {"peer-000000000007", "peer-000000000008", "peer-000000000009"}


# -- pending cap ----------------------------------------------------------------------


async def test_pending_queries_are_capped(enforcer: PolicyEnforcer) -> None:
    enforcer.apply(doc(2, max_pending_queries=2))
    async with enforcer.pending(), enforcer.pending():
        assert enforcer.status.pending == 2
        with pytest.raises(errors.TooManyPending) as caught:
            async with enforcer.pending():
                pass
        assert caught.value.retryable
        assert caught.value.http_status == 429
    assert enforcer.status.pending == 0
    async with enforcer.pending():
        pass


async def test_a_failing_query_releases_its_slot(enforcer: PolicyEnforcer) -> None:
    with pytest.raises(RuntimeError):
        async with enforcer.pending():
            raise RuntimeError("boom")
    assert enforcer.status.pending == 0


# -- metrics ----------------------------------------------------------------------------


def test_enforcer_reports_to_metrics(clock: FakeClock) -> None:
    registry = CollectorRegistry()
    door = PolicyEnforcer(clock, node_id=NODE, metrics=NodeMetrics(registry))
    door.apply(doc(7).model_copy(update={"bans": [BanEntry(cidr="10.0.0.0/8")]}))
    with pytest.raises(errors.PeerBanned):
        door.admit(PEER, IP, Operation.FETCH)
    door.admit(HONEST, "8.8.8.8", Operation.SEARCH)
    door.admit(HONEST, "8.8.8.8", Operation.SEARCH)
    with pytest.raises(errors.RateLimited):
        door.admit(HONEST, "8.8.8.8", Operation.SEARCH)
    door.record(HONEST, "8.8.8.8", Offence.INVALID_DATA)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("marketplace_node_policy_applied_version") == 7
    assert value("marketplace_node_refused_banned_total", operation="fetch", layer="fleet") == 1
    assert value("marketplace_node_rate_limited_total", operation="search", scope="peer") == 1
    assert value("marketplace_node_bans_issued_total", reason="invalid_data") == 1
    assert door.active_bans_by_reason() == {("fleet", ""): 1, ("local", "invalid_data"): 1}


# -- applying off the event loop ------------------------------------------------------


async def test_apply_async_compiles_in_a_thread_with_the_same_rules(clock: FakeClock) -> None:
    door = PolicyEnforcer(clock, node_id=NODE)
    applied = await door.apply_async(doc(2).model_copy(update={"bans": [BanEntry(peer_id=PEER)]}))
    assert applied.version == 2
    with pytest.raises(errors.PeerBanned):
        door.admit(PEER, IP, Operation.SEARCH)
    again = await door.apply_async(doc(2).model_copy(update={"bans": [BanEntry(peer_id=PEER)]}))
    assert again == applied
    with pytest.raises(errors.StalePolicy):
        await door.apply_async(doc(1))


async def test_a_document_overtaken_while_compiling_is_refused(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    door = PolicyEnforcer(clock, node_id=NODE)
    started, release = threading.Event(), threading.Event()
    real = compiled_module.compile_policy

    def slow(document: PolicyDocument | None, **kwargs: Any) -> CompiledPolicy:
        if document is not None and document.version == 2:
            started.set()
            release.wait(5)
        return real(document, **kwargs)

    monkeypatch.setattr(enforcer_module, "compile_policy", slow)
    big = [BanEntry(peer_id=f"peer-{i:012d}") for i in range(enforcer_module.INLINE_BANS + 1)]
    task = asyncio.create_task(door.apply_async(doc(2).model_copy(update={"bans": big})))
    assert await asyncio.to_thread(started.wait, 5)
    door.apply(doc(3))  # lands while version 2 is still compiling
    release.set()
    with pytest.raises(errors.StalePolicy):
        await task
    assert door.status.version == 3


async def test_a_small_document_is_applied_at_once_a_big_one_in_a_thread(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two thread hops cost a ban or two more than compiling them (issue 15: a policy push
    to 1,000 farm nodes); a big document still never compiles on the event loop."""
    hops: list[object] = []
    real = asyncio.to_thread

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    door = PolicyEnforcer(clock, node_id=NODE)
    small = [BanEntry(peer_id=PEER)]
    assert (await door.apply_async(doc(2).model_copy(update={"bans": small}))).version == 2
    assert hops == []
    with pytest.raises(errors.PeerBanned):
        door.admit(PEER, IP, Operation.SEARCH)
    big = [BanEntry(peer_id=f"peer-{i:012d}") for i in range(enforcer_module.INLINE_BANS + 1)]
    assert (await door.apply_async(doc(3).model_copy(update={"bans": big}))).version == 3
    assert len(hops) == 2  # hashing, then compiling
    with pytest.raises(errors.StalePolicy):
        await door.apply_async(doc(1))


def test_publishes_are_limited_per_author_key_with_a_typed_answer(
    enforcer: PolicyEnforcer, clock: FakeClock
) -> None:
    enforcer.apply(doc(2, per_publisher=Limit(rate=0.5, burst=2)))
    enforcer.admit_publisher("mpauthor")
    enforcer.admit_publisher("mpauthor")
    with pytest.raises(errors.RateLimited) as refused:
        enforcer.admit_publisher("mpauthor")
    assert refused.value.details == {"scope": "publisher", "author": "mpauthor"}
    assert refused.value.retry_after == pytest.approx(2.0)
    enforcer.admit_publisher("mpother")  # another key has its own budget
    enforcer.admit(PEER, IP, Operation.PUBLISH)  # and the peer's own limit is untouched
    clock.advance(2.0)
    enforcer.admit_publisher("mpauthor")


def test_the_default_per_publisher_limit_is_left_out_of_documents() -> None:
    assert "perPublisher" not in RateLimits().model_dump(by_alias=True)
    strict = RateLimits(per_publisher=Limit(rate=1, burst=1)).model_dump(by_alias=True)
    assert strict["perPublisher"] == {"rate": 1, "burst": 1}
