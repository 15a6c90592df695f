"""Gossip targets and the seen cache."""

from __future__ import annotations

import random

from marketplace_node import limits
from marketplace_node.gossip import (
    SeenCache,
    fanout_for,
    forward_targets,
    parse_reached,
    reached_hint,
)
from marketplace_node.peers import PeerTable
from marketplace_protocol.clock import FakeClock
from marketplace_protocol.identity import Identity

from tests.support.signed import package, package_announcement


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


def test_fanout_is_wide_only_for_our_own_fresh_announcement() -> None:
    ann = package_announcement(package())
    wide = {"origin_fanout": 32, "relay_fanout": 5}
    assert fanout_for(ann, ann.origin, **wide) == 32
    assert fanout_for(ann, "someone-else", **wide) == 5
    relayed = ann.model_copy(update={"hops": 1})
    assert fanout_for(relayed, ann.origin, **wide) == 5  # our own, come back round


def test_a_relay_skips_the_peers_the_sender_says_it_reached() -> None:
    table = PeerTable(capacity=10)
    ann = package_announcement(package()).model_copy(update={"hops": 1})
    for peer in [ann.origin, "b", "c", "d", "e"]:
        table.seen(peer, f"http://{peer}:1", 0.0)
    rng = random.Random(1)

    def targets(reached: frozenset[str]) -> set[str]:
        found = forward_targets(
            ann, table, rng, fanout=5, hop_limit=10, sender=ann.origin, self_id="me",
            reached=reached,
        )  # fmt: skip
        return {t.peer_id for t in found}

    # The origin's wide step reached the whole fleet: a relay has nobody to add.
    assert targets(frozenset({"me", "b", "c", "d", "e"})) == set()
    # It missed one (it did not know it): the relay covers it.
    assert targets(frozenset({"me", "b", "c", "d"})) == {"e"}
    assert targets(frozenset()) == {"b", "c", "d", "e"}


def test_the_reached_hint_puts_our_targets_first_and_is_bounded() -> None:
    table = PeerTable(capacity=200)
    for i in range(100):
        table.seen(f"p{i}", f"http://p{i}:1", 0.0)
    pushed = table.sample(3, random.Random(2))
    told = [f"q{i}" for i in range(100)]
    hint = reached_hint(pushed, told)
    assert hint[:3] == tuple(p.peer_id for p in pushed)
    assert len(hint) == limits.GOSSIP_REACHED_MAX
    assert reached_hint(pushed, [pushed[0].peer_id]) == tuple(p.peer_id for p in pushed)


def test_the_reached_header_keeps_only_peer_ids_and_at_most_the_bound() -> None:
    ids = [Identity.generate().peer_id for _ in range(limits.GOSSIP_REACHED_MAX + 5)]
    assert parse_reached(",".join(ids)) == frozenset(ids[: limits.GOSSIP_REACHED_MAX])
    assert parse_reached(f"{ids[0]},,not a peer id,{'x' * 5000}") == {ids[0]}
    assert parse_reached("") == frozenset()
