"""Gossip targets and the seen cache."""

from __future__ import annotations

import random

from marketplace_node.gossip import SeenCache, fanout_for, forward_targets
from marketplace_node.peers import PeerTable
from marketplace_protocol.clock import FakeClock

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
