"""The gossip simulator's invariants: deterministic, each node stores once, hop limit and
partitions respected, anti-entropy alone reaches everyone (small fleets: milliseconds)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # `bench` is not an installed package

from bench.gossip_sim import FleetGossip, GossipParams, Gossipsub, Network, percentile

LOSSLESS = Network(loss=0.0)


def spread(sim: FleetGossip | Gossipsub) -> list[tuple[int, float]]:
    return [(len(d.at), round(sum(d.at.values()), 9)) for d in sim.deliveries]


def test_one_seed_gives_one_history_and_another_seed_another() -> None:
    def run(seed: int) -> list[tuple[int, float]]:
        sim = FleetGossip(200, GossipParams(fanout=3, hop_limit=4), Network(loss=0.05), seed=seed)
        for k in range(3):
            sim.publish(k * 7, 1.0 + k)
        sim.run(60.0)
        return spread(sim)

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_every_node_stores_each_announcement_once_and_relays_it_at_most_once() -> None:
    n, params = 300, GossipParams(origin_fanout=8, fanout=4, hop_limit=16)
    sim = FleetGossip(n, params, LOSSLESS, seed=2, sync=False)
    number = sim.publish(0, 1.0)
    sim.run(30.0)
    delivery = sim.deliveries[number]
    assert len(delivery.at) == delivery.by_push <= n
    assert all(t >= 1.0 for t in delivery.at.values())
    assert delivery.at[0] == 1.0  # the origin stores at publish
    assert delivery.pushes <= params.origin_fanout + params.fanout * (len(delivery.at) - 1)
    assert delivery.duplicates == delivery.pushes - (len(delivery.at) - 1)  # the rest were dups


def test_the_hop_limit_bounds_the_spread() -> None:
    sim = FleetGossip(
        500, GossipParams(origin_fanout=10, hop_limit=1), LOSSLESS, seed=3, sync=False
    )
    sim.publish(7, 0.0)
    sim.run(30.0)
    assert len(sim.deliveries[0].at) == 1 + 10  # the origin's pushes, never relayed


def test_anti_entropy_alone_reaches_every_node() -> None:
    params = GossipParams(origin_fanout=1, fanout=1, hop_limit=1, sync_interval=2.0, max_peers=8)
    sim = FleetGossip(100, params, Network(loss=0.1), seed=4)
    sim.publish(0, 0.0)
    sim.run(10.0)
    assert len(sim.deliveries[0].at) < 100
    sim.run(200.0)
    delivery = sim.deliveries[0]
    assert len(delivery.at) == 100
    assert delivery.by_push <= 2  # the origin and its one push (if not lost); the rest by pulls
    assert sim.pulls > 0


def test_a_partition_holds_until_it_heals_then_the_halves_converge() -> None:
    n = 200
    sim = FleetGossip(n, GossipParams(sync_interval=2.0), LOSSLESS, seed=5)
    side = [i % 2 for i in range(n)]
    sim.partition(side, 0.0, 20.0)
    sim.publish(0, 1.0)  # side 0
    sim.run(19.9)
    assert {side[i] for i in sim.deliveries[0].at} == {0}
    sim.run(120.0)
    assert len(sim.deliveries[0].at) == n
    assert min(t for i, t in sim.deliveries[0].at.items() if side[i] == 1) >= 20.0


def test_gossipsub_covers_a_lossless_fleet_with_about_d_messages_per_node() -> None:
    n = 500
    sim = Gossipsub(n, LOSSLESS, seed=6, d=6)
    assert all(len(mesh) <= 6 for mesh in sim.mesh)
    sim.publish(0, 0.0)
    sim.run(20.0)
    delivery = sim.deliveries[0]
    assert len(delivery.at) == n
    assert 4 * n <= delivery.pushes <= 6 * n


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0.1) == 1.0
    assert percentile([], 50) != percentile([], 50)  # nan
