"""Gossip at 1,000 and 10,000 peers: the node's own decision code in the event simulator.

For each fleet size, `ANNOUNCEMENTS` announcements from random origins spread
through `bench.gossip_sim.FleetGossip` (real `forward_targets`, `fanout_for`,
`SeenCache`, `PeerTable`, sync pacing) over a network with log-normal latency
(median 50 ms) and 1 % loss. Reported per configuration:

- push coverage: the share of nodes an announcement reaches by push alone;
- coverage time p50/p99/p99.9: over every (node, announcement), the time from
  publish to stored (push or anti-entropy; a node never reached counts as
  infinite);
- messages per node per announcement: pushes sent / nodes (sync pulls are a
  constant cost of 60 / sync_interval requests per node per minute, whatever
  the announcement rate);
- catch-up after a partition: the fleet split in two halves for
  `PARTITION_SECONDS`, announcements published on both sides meanwhile; the
  time from the heal until every node holds every announcement (p99, max).

The same network runs gossipsub (mesh degree D = 6, IHAVE/IWANT each 1 s
heartbeat) as the comparison, and the old defaults (fan-out 3, hop limit 6)
beside the current ones. Exit status 1 if the current defaults miss
`COVERAGE_P99_TARGET_S` at 10,000 peers. docs/gossip.md explains the choice.

Run: `.venv/bin/python -m bench gossip`.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from marketplace_node.config import NodeSettings

from bench import report
from bench.gossip_sim import Delivery, FleetGossip, GossipParams, Gossipsub, Network, percentile

if TYPE_CHECKING:
    from matplotlib.axes import Axes

SEED = 20_261_204
ANNOUNCEMENTS = 4
SIZES = (100, 300, 1_000, 3_000, 10_000)
PARTITION_SECONDS = 30.0
COVERAGE_P99_TARGET_S = 1.0
NETWORK = Network(latency_median=0.05, latency_sigma=0.5, loss=0.01)


def current() -> GossipParams:
    s = NodeSettings()
    return GossipParams(
        origin_fanout=s.gossip_origin_fanout,
        fanout=s.gossip_fanout,
        hop_limit=s.gossip_hop_limit,
        sync_interval=s.sync_interval_seconds,
        max_peers=s.max_peers,
    )


OLD = GossipParams(origin_fanout=32, fanout=3, hop_limit=6, sync_interval=15.0, max_peers=64)


@dataclass(frozen=True)
class Coverage:
    name: str
    n: int
    push_coverage: float
    p50: float
    p99: float
    p999: float
    messages: float  # per node per announcement
    latencies: tuple[float, ...]
    seconds: float  # wall time of the simulation


def _summarise(name: str, n: int, deliveries: list[Delivery], started: float) -> Coverage:
    lat: list[float] = []
    for d in deliveries:
        lat += d.latencies() + [math.inf] * (n - len(d.at))
    lat.sort()
    count = len(deliveries)
    return Coverage(
        name=name,
        n=n,
        push_coverage=sum(d.by_push for d in deliveries) / count / n,
        p50=percentile(lat, 50),
        p99=percentile(lat, 99),
        p999=percentile(lat, 99.9),
        messages=sum(d.pushes for d in deliveries) / count / n,
        latencies=tuple(lat),
        seconds=time.perf_counter() - started,
    )


def _publish_some(sim: FleetGossip | Gossipsub, n: int, rng: random.Random) -> None:
    for k in range(ANNOUNCEMENTS):
        sim.publish(rng.randrange(n), 1.0 + 2.0 * k)


def fleet_coverage(n: int, params: GossipParams, name: str) -> Coverage:
    started = time.perf_counter()
    sim = FleetGossip(n, params, NETWORK, seed=SEED)
    _publish_some(sim, n, random.Random(SEED))
    sim.run(2.0 * ANNOUNCEMENTS + 6 * params.sync_interval)
    return _summarise(name, n, sim.deliveries, started)


def gossipsub_coverage(n: int) -> Coverage:
    started = time.perf_counter()
    sim = Gossipsub(n, NETWORK, seed=SEED)
    _publish_some(sim, n, random.Random(SEED))
    sim.run(2.0 * ANNOUNCEMENTS + 30.0)
    cov = _summarise("gossipsub D=6", n, sim.deliveries, started)
    control = sim.control / ANNOUNCEMENTS / n
    print(f"  (gossipsub control messages IHAVE/IWANT: {control:.2f} per node per message)")
    return cov


@dataclass(frozen=True)
class CatchUp:
    n: int
    sync_interval: float
    missing_at_heal: int  # (node, announcement) pairs
    p99: float
    all_caught_up: float


def partition_catch_up(n: int, params: GossipParams) -> CatchUp:
    """Halves cut from t=5 s for PARTITION_SECONDS; 4 announcements on each side meanwhile."""
    sim = FleetGossip(n, params, NETWORK, seed=SEED)
    rng = random.Random(SEED)
    side = [rng.randrange(2) for _ in range(n)]
    start, heal = 5.0, 5.0 + PARTITION_SECONDS
    sim.partition(side, start, heal)
    halves = [[i for i in range(n) if side[i] == s] for s in (0, 1)]
    for k in range(ANNOUNCEMENTS):
        for members in halves:
            sim.publish(rng.choice(members), start + 5.0 + 2.0 * k)
    sim.run(heal)
    missing = sum(n - len(d.at) for d in sim.deliveries)
    until = heal
    while any(len(d.at) < n for d in sim.deliveries) and until < heal + 20 * params.sync_interval:
        until += params.sync_interval / 2
        sim.run(until)
    late = sorted(
        [t - heal for d in sim.deliveries for t in d.at.values() if t > heal]
        + [math.inf] * sum(n - len(d.at) for d in sim.deliveries)
    )
    return CatchUp(
        n=n,
        sync_interval=params.sync_interval,
        missing_at_heal=missing,
        p99=percentile(late, 99),
        all_caught_up=late[-1] if late else 0.0,
    )


def write_report(
    rows: list[Coverage], sweep: list[tuple[int, int, Coverage]], catch_ups: list[CatchUp]
) -> None:
    report.add("Coverage by fleet size (4 announcements each; 50 ms median latency, 1 % loss):\n")
    report.add(
        report.table(
            ["peers", "protocol", "push coverage", "p50", "p99", "p99.9", "msgs/node/announcement"],
            [
                [
                    f"{c.n:,}",
                    c.name,
                    f"{c.push_coverage:.2%}",
                    _s(c.p50),
                    _s(c.p99),
                    _s(c.p999),
                    f"{c.messages:.2f}",
                ]
                for c in rows
            ],
        )
    )
    report.add("Tuning sweep at 1,000 peers:\n")
    report.add(
        report.table(
            ["fan-out", "hop limit", "push coverage", "p99", "p99.9", "msgs/node"],
            [
                [f, h, f"{c.push_coverage:.2%}", _s(c.p99), _s(c.p999), f"{c.messages:.2f}"]
                for f, h, c in sweep
            ],
        )
    )
    report.add(f"Catch-up after a {PARTITION_SECONDS:.0f} s partition into halves:\n")
    report.add(
        report.table(
            [
                "peers",
                "sync interval",
                "(node, announcement) missing at heal",
                "p99",
                "all caught up",
            ],
            [
                [
                    f"{c.n:,}",
                    f"{c.sync_interval:.0f} s",
                    f"{c.missing_at_heal:,}",
                    _s(c.p99),
                    _s(c.all_caught_up),
                ]
                for c in catch_ups
            ],
        )
    )

    def draw(ax: Axes) -> None:
        for name in dict.fromkeys(c.name for c in rows):
            mine = [c for c in rows if c.name == name]
            ax.plot([c.n for c in mine], [c.p99 for c in mine], marker="o", label=f"{name} p99")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("peers")
        ax.set_ylabel("seconds from publish to stored")
        ax.legend()

    report.plot("gossip-coverage", "Gossip coverage time p99 against fleet size", draw)


def _s(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.2f} s"


def main() -> int:
    print(
        "== gossip at scale: the node's decision code, simulated "
        "(latency 50 ms median, 1 % loss) =="
    )
    params = current()
    print(
        f"current defaults: origin fan-out {params.origin_fanout}, fan-out {params.fanout}, "
        f"hop limit {params.hop_limit}, sync every {params.sync_interval:.0f} s, "
        f"{params.max_peers} peers per table"
    )
    rows: list[Coverage] = []
    for n in SIZES:
        for cov in (
            fleet_coverage(n, params, "current"),
            fleet_coverage(n, OLD, "old (3/6)"),
            gossipsub_coverage(n),
        ):
            rows.append(cov)
            print(
                f"  n={n:>6,} {cov.name:14} push {cov.push_coverage:7.2%}  "
                f"p50 {_s(cov.p50)}  p99 {_s(cov.p99)}  p99.9 {_s(cov.p999)}  "
                f"{cov.messages:.2f} msgs/node/announcement  [{cov.seconds:.1f} s]",
                flush=True,
            )
    sweep: list[tuple[int, int, Coverage]] = []
    print("tuning sweep at 1,000 peers (fan-out x hop limit):")
    for fanout in (3, 4, 5, 6):
        for hop_limit in (6, 10):
            tuned = GossipParams(
                origin_fanout=params.origin_fanout,
                fanout=fanout,
                hop_limit=hop_limit,
                sync_interval=params.sync_interval,
                max_peers=params.max_peers,
            )
            cov = fleet_coverage(1_000, tuned, f"{fanout}/{hop_limit}")
            sweep.append((fanout, hop_limit, cov))
            print(
                f"  fan-out {fanout} hop limit {hop_limit:>2}: push {cov.push_coverage:7.2%} "
                f"p99 {_s(cov.p99)} p99.9 {_s(cov.p999)} {cov.messages:.2f} msgs",
                flush=True,
            )
    catch_ups: list[CatchUp] = []
    print(f"catch-up after a {PARTITION_SECONDS:.0f} s partition into halves:")
    for n, intervals in (
        (1_000, {5.0, 10.0, 15.0, params.sync_interval}),
        (10_000, {params.sync_interval}),
    ):
        for interval in sorted(intervals):
            tuned = GossipParams(
                origin_fanout=params.origin_fanout,
                fanout=params.fanout,
                hop_limit=params.hop_limit,
                sync_interval=interval,
                max_peers=params.max_peers,
            )
            cu = partition_catch_up(n, tuned)
            catch_ups.append(cu)
            print(
                f"  n={n:>6,} sync every {interval:>4.0f} s: "
                f"{cu.missing_at_heal:,} missing at heal, p99 {_s(cu.p99)}, "
                f"all caught up after {_s(cu.all_caught_up)}",
                flush=True,
            )
    at_scale = next(c for c in rows if c.n == 10_000 and c.name == "current")
    ok = at_scale.p99 <= COVERAGE_P99_TARGET_S
    print(
        f"10,000 peers, current defaults: coverage p99 {_s(at_scale.p99)} "
        f"[target < {COVERAGE_P99_TARGET_S:.0f} s: {'ok' if ok else 'MISSED'}]"
    )
    write_report(rows, sweep, catch_ups)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
