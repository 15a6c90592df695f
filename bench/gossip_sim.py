"""An event-by-event simulator of the fleet's gossip, driving the node's own decision code.

Real node code decides everything a node decides: `PeerTable.sample` and
`gossip.forward_targets` choose push targets, `gossip.fanout_for` the fan-out,
`gossip.SeenCache` (on the simulated clock) drops duplicates, and
`sync.next_pull_delay` / `sync.pull_peer` pace and aim anti-entropy. What is
modelled instead of run: the transport (one-way latency drawn from a
log-normal, independent loss, partitions that drop every message across a
cut), the store (a set of announcement numbers; verification always passes)
and membership (each node's table holds `max_peers` peers drawn at random,
what peer exchange converges to; no churn, so a partition must stay shorter
than the `stale_after` that would remove silent peers). A lost push is not
retried (as in the node); a lost pull costs the node its peer timeout.

`Gossipsub` is the comparison: the same network and clock, a mesh of degree
D (each node forwards every new message to its mesh peers but the sender) and
lazy repair (each heartbeat, IHAVE of the last `history` heartbeats' messages
to `d_lazy` non-mesh peers, answered by IWANT and the message).

Deterministic: one seed fixes the tables, latencies, losses and every choice.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from marketplace_node import gossip, sync
from marketplace_node.model import Announcement, AnnouncementKind
from marketplace_node.peers import PeerTable


class SimClock:
    """The simulated time, as the node's `Clock` (monotonic and wall move together)."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now


@dataclass(frozen=True)
class Network:
    latency_median: float = 0.05  # seconds, one way
    latency_sigma: float = 0.5  # of the log-normal: p99 about 3.2 x the median
    loss: float = 0.01
    peer_timeout: float = 3.0  # a lost pull costs this (the node's peer_timeout_seconds)


@dataclass(frozen=True)
class GossipParams:
    """The node's settings that shape gossip (defaults: `NodeSettings`' own)."""

    origin_fanout: int = 32
    fanout: int = 3
    hop_limit: int = 6
    sync_interval: float = 15.0
    max_peers: int = 64


@dataclass
class Delivery:
    """One announcement's spread: when each node first stored it, and what it cost."""

    published: float
    origin: int
    at: dict[int, float] = field(default_factory=dict)  # node -> time stored
    by_push: int = 0
    pushes: int = 0  # push messages sent (lost ones included)
    duplicates: int = 0  # pushes that arrived at a node that already had it

    def latencies(self) -> list[float]:
        return sorted(t - self.published for t in self.at.values())


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted `values` (nan when empty)."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


class _EventLoop:
    """A heap of (time, sequence, callback): ties run in scheduling order."""

    def __init__(self, seed: int, network: Network) -> None:
        self.clock = SimClock()
        self.rng = random.Random(seed)
        self.network = network
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = 0
        self._cuts: list[tuple[float, float, list[int]]] = []  # (start, end, side of node)
        self.events = 0

    def at(self, when: float, action: Callable[[], None]) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, (when, self._sequence, action))

    def run(self, until: float) -> None:
        while self._queue and self._queue[0][0] <= until:
            when, _, action = heapq.heappop(self._queue)
            self.clock.now = when
            self.events += 1
            action()
        self.clock.now = max(self.clock.now, until)

    def partition(self, side: list[int], start: float, end: float) -> None:
        """Between `start` and `end`, drop every message between nodes of different sides."""
        self._cuts.append((start, end, side))

    def latency(self) -> float:
        net = self.network
        return net.latency_median * math.exp(self.rng.gauss(0.0, net.latency_sigma))

    def delivered(self, sender: int, receiver: int, arrival: float) -> bool:
        """Whether a message sent now from `sender` reaches `receiver` (loss, partitions)."""
        if self.rng.random() < self.network.loss:
            return False
        for start, end, side in self._cuts:
            if side[sender] != side[receiver] and (
                start <= self.clock.now < end or start <= arrival < end
            ):
                return False
        return True


def _peer_id(index: int) -> str:
    return f"{index:064x}"


def _announcement(origin: str) -> Announcement:
    """What the decisions read of an announcement (origin, hops); never signed or verified."""
    return Announcement.model_construct(
        kind=AnnouncementKind.PACKAGE, origin=origin, created=0, nonce="", signature="", hops=0
    )


def _random_tables(n: int, degree: int, rng: random.Random) -> list[list[int]]:
    """Each node's known peers: `degree` distinct others at random."""
    k = min(degree, n - 1)
    tables = []
    for i in range(n):
        chosen = rng.sample(range(n - 1), k)
        tables.append([j if j < i else j + 1 for j in chosen])
    return tables


class _Node:
    __slots__ = ("index", "peer_id", "seen", "stored", "table")

    def __init__(self, index: int, table: PeerTable, seen: gossip.SeenCache) -> None:
        self.index, self.peer_id, self.table, self.seen = index, _peer_id(index), table, seen
        self.stored: set[int] = set()


class FleetGossip(_EventLoop):
    """`n` nodes running the node's push gossip and anti-entropy pulls."""

    def __init__(
        self,
        n: int,
        params: GossipParams = GossipParams(),
        network: Network = Network(),
        *,
        seed: int = 1,
        sync: bool = True,
    ) -> None:
        super().__init__(seed, network)
        self.params = params
        self.nodes: list[_Node] = []
        self.index_of: dict[str, int] = {}
        for i, known in enumerate(_random_tables(n, params.max_peers, self.rng)):
            table = PeerTable(capacity=params.max_peers)
            for j in known:
                table.seen(_peer_id(j), f"sim://{j}", 0.0)
            self.nodes.append(_Node(i, table, gossip.SeenCache(self.clock)))
            self.index_of[_peer_id(i)] = i
        self.deliveries: list[Delivery] = []
        self.pulls = 0
        if sync:
            for node in self.nodes:
                self.at(self._pull_delay(), partial(self._pull, node))

    # -- push (service.publish / accept / forward) --------------------------------

    def publish(self, origin: int, when: float) -> int:
        """Node `origin` publishes a new announcement at `when`; returns its number."""
        number = len(self.deliveries)
        self.deliveries.append(Delivery(published=when, origin=origin))

        def start() -> None:
            node = self.nodes[origin]
            self._store(node, number, by_push=True)
            ann = _announcement(node.peer_id)
            self._forward(node, number, ann, sender=None)

        self.at(when, start)
        return number

    def _store(self, node: _Node, number: int, *, by_push: bool) -> bool:
        if number in node.stored:
            return False
        node.stored.add(number)
        delivery = self.deliveries[number]
        delivery.at[node.index] = self.clock.now
        delivery.by_push += by_push
        return True

    def _accept(
        self,
        node: _Node,
        number: int,
        ann: Announcement,
        *,
        sender: str | None,
        forward: bool,
        reached: frozenset[str] = frozenset(),
    ) -> None:
        """`NodeService.accept`: the seen-cache first, forward before the store's dedup."""
        key = f"{number}"
        if key in node.seen:
            self.deliveries[number].duplicates += forward
            return
        node.seen.add(key)
        if forward:
            self._forward(node, number, ann, sender=sender, reached=reached)
        self._store(node, number, by_push=forward)

    def _forward(
        self,
        node: _Node,
        number: int,
        ann: Announcement,
        *,
        sender: str | None,
        reached: frozenset[str] = frozenset(),
    ) -> None:
        p = self.params
        fanout = gossip.fanout_for(
            ann, node.peer_id, origin_fanout=p.origin_fanout, relay_fanout=p.fanout
        )
        targets = gossip.forward_targets(
            ann,
            node.table,
            self.rng,
            fanout=fanout,
            hop_limit=p.hop_limit,
            sender=sender,
            self_id=node.peer_id,
            reached=reached,
        )
        if not targets:
            return
        relayed = ann.model_copy(update={"hops": ann.hops + 1})
        hint = frozenset(gossip.reached_hint(targets, reached))
        self.deliveries[number].pushes += len(targets)
        for peer in targets:
            receiver = self.nodes[self.index_of[peer.peer_id]]
            arrival = self.clock.now + self.latency()
            if self.delivered(node.index, receiver.index, arrival):
                self.at(
                    arrival,
                    partial(
                        self._accept,
                        receiver,
                        number,
                        relayed,
                        sender=node.peer_id,
                        forward=True,
                        reached=hint,
                    ),
                )

    # -- anti-entropy (sync.run / sync.pull) --------------------------------------

    def _pull_delay(self) -> float:
        return sync.next_pull_delay(self.params.sync_interval, self.rng)

    def _pull(self, node: _Node) -> None:
        peer = sync.pull_peer(node.table.all(), self.rng)
        if peer is None:
            self.at(self.clock.now + self._pull_delay(), lambda: self._pull(node))
            return
        self.pulls += 1
        source = self.nodes[self.index_of[peer.peer_id]]
        timed_out = self.clock.now + self.network.peer_timeout
        there = self.clock.now + self.latency()
        if not self.delivered(node.index, source.index, there):
            self.at(timed_out, lambda: self._apply_page(node, peer.peer_id, []))
            return

        def answer() -> None:
            back = self.clock.now + self.latency()
            if not self.delivered(source.index, node.index, back):
                self.at(timed_out, lambda: self._apply_page(node, peer.peer_id, []))
                return
            missing = sorted(source.stored - node.stored)  # its log after our cursor
            self.at(back, lambda: self._apply_page(node, peer.peer_id, missing))

        self.at(there, answer)

    def _apply_page(self, node: _Node, sender: str, numbers: list[int]) -> None:
        for number in numbers:
            ann = _announcement("")  # not forwarded: only the seen-cache looks at it
            self._accept(node, number, ann, sender=sender, forward=False)
        self.at(self.clock.now + self._pull_delay(), lambda: self._pull(node))


class Gossipsub(_EventLoop):
    """The comparison: gossipsub's mesh push (degree `d`) and IHAVE/IWANT lazy repair."""

    def __init__(
        self,
        n: int,
        network: Network = Network(),
        *,
        seed: int = 1,
        d: int = 6,
        d_lazy: int = 6,
        heartbeat: float = 1.0,
        history: int = 3,
        known_peers: int = 64,
    ) -> None:
        super().__init__(seed, network)
        self.heartbeat, self.history, self.d_lazy = heartbeat, history, d_lazy
        self.mesh: list[set[int]] = [set() for _ in range(n)]
        order = list(range(n))
        for _ in range(d // 2 + 1):  # stubs matched at random: a near-regular graph of degree d
            self.rng.shuffle(order)
            for a, b in zip(order, order[1:] + order[:1], strict=True):
                if a != b and len(self.mesh[a]) < d and len(self.mesh[b]) < d:
                    self.mesh[a].add(b)
                    self.mesh[b].add(a)
        self.known = _random_tables(n, known_peers, self.rng)
        self.stored: list[dict[int, float]] = [{} for _ in range(n)]  # message -> time stored
        self.deliveries: list[Delivery] = []
        self.control = 0  # IHAVE and IWANT messages
        for i in range(n):
            self.at(self.rng.random() * heartbeat, partial(self._heartbeat, i))

    def publish(self, origin: int, when: float) -> int:
        number = len(self.deliveries)
        self.deliveries.append(Delivery(published=when, origin=origin))
        self.at(when, lambda: self._receive(origin, number, sender=None, by_push=True))
        return number

    def _receive(self, node: int, number: int, *, sender: int | None, by_push: bool) -> None:
        delivery = self.deliveries[number]
        if number in self.stored[node]:
            delivery.duplicates += 1
            return
        self.stored[node][number] = self.clock.now
        delivery.at[node] = self.clock.now
        delivery.by_push += by_push
        for peer in self.mesh[node]:
            if peer != sender and peer != delivery.origin:
                delivery.pushes += 1
                self._send(
                    node, peer, partial(self._receive, peer, number, sender=node, by_push=True)
                )

    def _send(self, sender: int, receiver: int, action: Callable[[], None]) -> None:
        arrival = self.clock.now + self.latency()
        if self.delivered(sender, receiver, arrival):
            self.at(arrival, action)

    def _heartbeat(self, node: int) -> None:
        window = self.clock.now - self.history * self.heartbeat
        recent = [m for m, t in self.stored[node].items() if t >= window]
        if recent:
            pool = [p for p in self.known[node] if p not in self.mesh[node]]
            for peer in self.rng.sample(pool, min(self.d_lazy, len(pool))):
                self.control += 1
                self._send(node, peer, partial(self._ihave, peer, node, recent))
        self.at(self.clock.now + self.heartbeat, lambda: self._heartbeat(node))

    def _ihave(self, node: int, sender: int, numbers: list[int]) -> None:
        wanted = [m for m in numbers if m not in self.stored[node]]
        if wanted:
            self.control += 1
            self._send(node, sender, lambda: self._iwant(sender, node, wanted))

    def _iwant(self, node: int, requester: int, numbers: list[int]) -> None:
        for number in numbers:
            self.deliveries[number].pushes += 1
            self._send(
                node,
                requester,
                partial(self._receive, requester, number, sender=node, by_push=False),
            )
