"""The worker's rounds against fakes of its ports: order of effects, versions, problems, polls.

The fakes are at the worker's own ports (Inputs, Cluster, PolicyClient); the fake
node applies rollback protection exactly as the node's admin API does (409 for
an older version, or for the same version with other content).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from marketplace_operator import errors
from marketplace_operator.model.banlist import BanList, BanListSpec
from marketplace_operator.model.ratelimitpolicy import RateLimitPolicy, RateLimitPolicySpec
from marketplace_operator.policy import worker as worker_module
from marketplace_operator.policy.effective import effective_policy
from marketplace_operator.policy.metrics import PolicyMetrics
from marketplace_operator.policy.ports import FleetKey, InvalidObject, ObjectRef
from marketplace_operator.policy.propagate import NodeTarget
from marketplace_operator.policy.settings import PolicySettings
from marketplace_operator.policy.versioning import PolicyVersion, content_hash, from_annotations
from marketplace_operator.policy.worker import SWEEP_NODES_PER_SECOND, PolicyWorker, sweep_pause
from marketplace_operator.reconcile.status import joined
from marketplace_protocol.admin import (
    LocalBan,
    LocalBans,
    NodeStatus,
    Peering,
    PolicyApplied,
    PolicyDocument,
    Replication,
)
from marketplace_protocol.clock import FakeClock, SystemClock
from prometheus_client import CollectorRegistry

KEY = FleetKey("ns", "blue")
PEER = "peerAAAAAAAA"
START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def target(i: int) -> NodeTarget:
    return NodeTarget(f"node-{i}", f"uid-{i}", f"http://127.1.0.{i}:7070")


@dataclass
class Inputs:
    banlist_objs: list[BanList] = field(default_factory=list)
    policy_objs: list[RateLimitPolicy] = field(default_factory=list)
    invalid_objs: list[InvalidObject] = field(default_factory=list)
    node_list: list[NodeTarget] = field(default_factory=lambda: [target(1), target(2)])
    fleet_keys: set[FleetKey] = field(default_factory=lambda: {KEY})
    configmap_uid: str | None = "cm-1"
    fleet_replication: Replication | None = None
    fleet_peering: Peering | None = None

    def replication(self, key: FleetKey) -> Replication | None:
        return self.fleet_replication

    def peering(self, key: FleetKey) -> Peering | None:
        return self.fleet_peering

    def fleet_uid(self, key: FleetKey) -> str | None:
        return self.configmap_uid

    def banlists(self, namespace: str) -> Sequence[BanList]:
        return self.banlist_objs

    def policies(self, namespace: str) -> Sequence[RateLimitPolicy]:
        return self.policy_objs

    def invalid(self, namespace: str) -> Sequence[InvalidObject]:
        return self.invalid_objs

    def nodes(self, key: FleetKey) -> Sequence[NodeTarget]:
        return self.node_list

    def fleets(self) -> Collection[FleetKey]:
        return self.fleet_keys


@dataclass
class Cluster:
    log: list[str]
    annotations: dict[str, str] | None = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[str, str]] = field(default_factory=list)
    auto: list[list[dict[str, Any]]] = field(default_factory=list)
    write_error: Exception | None = None  # the next policy writes raise it...
    write_lands: bool = False  # ...after landing (a timed-out answer), or without landing

    async def read_version(self, key: FleetKey) -> PolicyVersion | None:
        if self.annotations is None:
            raise errors.NotFound("no ConfigMap")
        return from_annotations(self.annotations)

    async def write_policy(
        self, key: FleetKey, patch: dict[str, Any], shards: Sequence[dict[str, Any]] = ()
    ) -> None:
        assert self.annotations is not None
        if self.write_error is not None and not self.write_lands:
            raise self.write_error
        self.annotations.update(patch["metadata"]["annotations"])
        self.log.append(
            f"configmap v{patch['metadata']['annotations']['marketplace.p2p.dev/policy-version']}"
        )
        if self.write_error is not None:
            raise self.write_error

    async def write_auto_banlist(self, key: FleetKey, entries: list[dict[str, Any]]) -> None:
        self.auto.append(entries)

    async def write_status(self, ref: ObjectRef, status: dict[str, Any]) -> None:
        self.statuses[ref.name] = status

    async def event(self, ref: ObjectRef, *, reason: str, message: str, warning: bool) -> None:
        self.events.append((ref.name, reason))


class Nodes:
    """Nodes with rollback protection, each with an applied (version, hash)."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.applied: dict[str, tuple[int, str]] = {}
        self.documents: dict[str, PolicyDocument] = {}
        self.down: set[str] = set()
        self.local: dict[str, list[LocalBan]] = {}

    async def put_policy(self, base: str, token: str, policy: PolicyDocument) -> PolicyApplied:
        if base in self.down:
            raise errors.NodeUnreachable("connection refused")
        current = self.applied.get(base)
        if current is not None and (
            policy.version < current[0]
            or (policy.version == current[0] and policy.hash != current[1])
        ):
            raise errors.NodeRefused("stale", status=409, code="stale_policy")
        self.applied[base] = (policy.version, policy.hash)
        self.documents[base] = policy
        self.log.append(f"push {base.removeprefix('http://')} v{policy.version}")
        return PolicyApplied(version=policy.version, hash=policy.hash)

    async def status(self, base: str, token: str, *, peers: int) -> NodeStatus:
        if base in self.down:
            raise errors.NodeUnreachable("connection refused")
        current = self.applied.get(base)
        return NodeStatus(peer_id="p", policy_version=current[0] if current else None)

    async def local_bans(self, base: str, token: str) -> LocalBans:
        self.log.append(f"local-bans {base.removeprefix('http://')}")
        return LocalBans(peer_id="p", bans=self.local.get(base, []))


async def _token(key: FleetKey) -> str:
    return "t0ken"


SETTINGS = PolicySettings(attempts=2, retry_base_seconds=0.001, retry_max_seconds=0.002)


@dataclass
class World:
    inputs: Inputs
    cluster: Cluster
    nodes: Nodes
    clock: FakeClock
    registry: CollectorRegistry
    log: list[str]

    def worker(self, *, clock: Any = None, settings: PolicySettings = SETTINGS) -> PolicyWorker:
        """A fresh worker (as after an operator restart), with a fresh metrics registry."""
        self.registry = CollectorRegistry()
        return PolicyWorker(
            inputs=self.inputs,
            cluster=self.cluster,
            client=self.nodes,
            metrics=PolicyMetrics(self.registry),
            settings=settings,
            clock=clock or self.clock,
            tokens=_token,
            rng=random.Random(3),
        )

    def versions(self) -> list[int]:
        return sorted(v for v, _ in self.nodes.applied.values())


@pytest.fixture
def world() -> World:
    log: list[str] = []
    return World(
        Inputs(),
        Cluster(log),
        Nodes(log),
        FakeClock(wall=START.timestamp()),
        CollectorRegistry(),
        log,
    )


def banlist(name: str, *peers: str, fleet: str = "*", generation: int = 1) -> BanList:
    spec = BanListSpec.model_validate({"fleet": fleet, "entries": [{"peerId": p} for p in peers]})
    return BanList(
        namespace="ns",
        name=name,
        uid=f"uid-{name}",
        created=START,
        generation=generation,
        spec=spec,
    )


async def test_one_round_writes_the_configmap_and_converges_every_node(world: World) -> None:
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    await worker.round(KEY)
    assert sorted(world.log) == [
        "configmap v1",
        "push 127.1.0.1:7070 v1",
        "push 127.1.0.2:7070 v1",
    ]
    status = world.cluster.statuses["spam"]
    assert status["fleetPolicyVersion"] == 1
    assert status["convergedNodes"] == "2/2"
    assert status["entries"] == 1
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["PolicyConverged"]["status"] == "True"
    assert (
        world.registry.get_sample_value(
            "marketplace_operator_policy_bans", {"namespace": "ns", "fleet": "blue"}
        )
        == 1
    )
    assert (
        world.registry.get_sample_value("marketplace_operator_policy_propagation_seconds_count")
        == 1
    )


class GateWatchingNodes(Nodes):
    """Nodes that, at every push, ask the real `joined` gate about every node against the
    version the fleet ConfigMap names at that moment (what the node loops read)."""

    def __init__(self, log: list[str], cluster: Cluster) -> None:
        super().__init__(log)
        self.cluster = cluster
        self.gated_off: list[str] = []  # "<node> at v<n>": a node turned NotReady meanwhile

    async def put_policy(self, base: str, token: str, policy: PolicyDocument) -> PolicyApplied:
        current = from_annotations(self.cluster.annotations)
        for node, (version, _) in self.applied.items():
            answer = NodeStatus(peer_id="p", ready=True, policy_version=version)
            if not joined(
                answer,
                fleet_peer_ids=frozenset(),
                has_other_members=False,
                current_policy_version=current.version if current else None,
                policy_required=True,
            ):
                self.gated_off.append(f"{node} at v{version}")
        await asyncio.sleep(0)  # the pushes interleave, as they do on the event loop
        return await super().put_policy(base, token, policy)


async def test_the_configmap_names_a_version_only_after_the_push(world: World) -> None:
    """Issue 15: the ConfigMap written beside the pushes made every node not pushed yet
    "behind on policy" (its gate off, NotReady) for as long as the push took: at 1,000
    nodes under load, 10 s of a NotReady wave. Written after, no node that takes every
    push is ever behind the version the ConfigMap names."""
    world.inputs.node_list = [target(i) for i in range(1, 9)]
    world.nodes = GateWatchingNodes(world.log, world.cluster)
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    await worker.round(KEY)
    world.log.clear()
    world.inputs.banlist_objs = [banlist("spam", PEER, "peerBBBBBBBB", generation=2)]
    await worker.round(KEY)
    assert world.log[-1] == "configmap v2"  # after all 8 pushes
    assert sorted(world.log[:-1]) == sorted(f"push 127.1.0.{i}:7070 v2" for i in range(1, 9))
    assert world.nodes.gated_off == []
    assert world.versions() == [2] * 8


async def test_a_node_that_missed_the_push_is_behind_once_the_configmap_is_written(
    world: World,
) -> None:
    """The ConfigMap is written whatever the pushes' outcome (a (re)starting node reads it);
    the node that did not take the version is then behind it, and only that one."""
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    down = world.inputs.node_list[1].base_url
    world.nodes.down.add(down)
    await world.worker().round(KEY)
    assert world.log[-1] == "configmap v1"
    current = from_annotations(world.cluster.annotations)
    assert current is not None
    assert {base: v for base, (v, _) in world.nodes.applied.items()} == {
        world.inputs.node_list[0].base_url: current.version
    }


class CountingNodes(Nodes):
    """Nodes whose every attempt is logged, a refused one too."""

    async def put_policy(self, base: str, token: str, policy: PolicyDocument) -> PolicyApplied:
        self.log.append(f"attempt {base.removeprefix('http://')}")
        await asyncio.sleep(0)
        return await super().put_policy(base, token, policy)


async def test_a_dead_nodes_retries_do_not_hold_the_configmap_back(world: World) -> None:
    """Once every node had its first attempt the ConfigMap is written: a node that starts
    meanwhile reads the new version, while the dead node's retries go on."""
    world.nodes = CountingNodes(world.log)
    world.nodes.down.add(world.inputs.node_list[1].base_url)
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    settings = PolicySettings(attempts=3, retry_base_seconds=0.001, retry_max_seconds=0.002)
    await world.worker(settings=settings).apply(KEY)
    dead = "attempt 127.1.0.2:7070"
    assert world.log.count(dead) == 3
    written = world.log.index("configmap v1")
    assert world.log[:written].count(dead) == 1  # its first attempt, not its retries
    assert "push 127.1.0.1:7070 v1" in world.log[:written]


async def test_without_an_admin_token_the_configmap_is_still_written(world: World) -> None:
    async def no_token(key: FleetKey) -> str:
        raise errors.Unavailable("the admin Secret cannot be read")

    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = PolicyWorker(
        inputs=world.inputs, cluster=world.cluster, client=world.nodes,
        metrics=PolicyMetrics(world.registry), settings=SETTINGS, clock=world.clock,
        tokens=no_token,
    )  # fmt: skip
    with pytest.raises(errors.Unavailable):
        await worker.apply(KEY)
    assert world.log == ["configmap v1"]  # no push, the version published for restarts


async def test_an_unchanged_policy_is_neither_rewritten_nor_pushed_again(world: World) -> None:
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    await worker.round(KEY)
    world.log.clear()
    statuses = dict(world.cluster.statuses)
    world.cluster.statuses.clear()
    await worker.round(KEY)
    assert world.log == []
    assert world.cluster.statuses == {}  # status unchanged: not written again
    assert statuses


async def test_a_change_gets_the_next_version(world: World) -> None:
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    await worker.round(KEY)
    world.inputs.banlist_objs = [banlist("spam", PEER, "peerBBBBBBBB", generation=2)]
    await worker.round(KEY)
    assert world.versions() == [2, 2]
    assert world.cluster.annotations is not None
    assert world.cluster.annotations["marketplace.p2p.dev/policy-version"] == "2"


async def test_the_fleets_replication_travels_in_the_document_and_a_change_is_a_version(
    world: World,
) -> None:
    worker = world.worker()
    await worker.round(KEY)
    first = next(iter(world.nodes.documents.values()))
    assert first.replication is None  # no MarketplaceFleet yet: the nodes' own settings
    assert "replication" not in first.model_dump(by_alias=True)  # nodes before the field
    world.inputs.fleet_replication = Replication(factor=5, min_in_sync=3)
    await worker.round(KEY)
    assert world.versions() == [2, 2]
    assert {d.replication for d in world.nodes.documents.values()} == {
        Replication(factor=5, min_in_sync=3)
    }


async def test_the_fleets_peering_travels_in_the_document_and_a_change_is_a_version(
    world: World,
) -> None:
    worker = world.worker()
    await worker.round(KEY)
    first = next(iter(world.nodes.documents.values()))
    assert "peering" not in first.model_dump(by_alias=True)  # unset: nodes before the field
    peering = Peering(allowed_networks=("10.8.0.0/16",), seeds=("http://10.8.0.4:7070",))
    world.inputs.fleet_peering = peering
    await worker.round(KEY)
    assert world.versions() == [2, 2]
    assert {d.peering for d in world.nodes.documents.values()} == {peering}
    await worker.round(KEY)
    assert world.versions() == [2, 2]  # same peering, same version: no push storm


async def test_a_restarted_operator_keeps_the_version_and_never_goes_back(world: World) -> None:
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    await world.worker().round(KEY)
    world.inputs.banlist_objs = [banlist("spam", PEER, "peerBBBBBBBB", generation=2)]
    await world.worker().round(KEY)  # a second operator process (fresh memory)
    world.log.clear()
    restarted = world.worker()
    await restarted.round(KEY)
    assert sorted(world.log) == ["push 127.1.0.1:7070 v2", "push 127.1.0.2:7070 v2"]
    assert world.versions() == [2, 2]  # idempotent re-push of the same version, nothing older


async def test_a_lost_configmap_version_is_overtaken_from_the_nodes_answers(world: World) -> None:
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    for node in world.inputs.node_list:
        world.nodes.applied[node.base_url] = (5, "sha256:other")
    worker = world.worker()
    await worker.round(KEY)  # issues v1: both nodes answer 409 with their version 5
    assert world.versions() == [5, 5]
    await worker.round(KEY)
    assert world.versions() == [6, 6]
    assert world.cluster.annotations is not None
    assert world.cluster.annotations["marketplace.p2p.dev/policy-version"] == "6"


async def test_limits_that_cannot_apply_change_nothing_and_are_reported(world: World) -> None:
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    await worker.round(KEY)
    world.log.clear()
    world.inputs.policy_objs = [
        RateLimitPolicy(
            namespace="ns",
            name="short-max",
            uid="u1",
            generation=1,
            spec=RateLimitPolicySpec.model_validate(
                {"priority": 5, "escalation": {"maxBanSeconds": 30}}
            ),
        ),
        RateLimitPolicy(
            namespace="ns",
            name="long-first",
            uid="u2",
            generation=1,
            spec=RateLimitPolicySpec.model_validate({"escalation": {"firstBanSeconds": 600}}),
        ),
    ]
    await worker.round(KEY)
    await worker.round(KEY)
    assert world.log == []  # no ConfigMap write, no push
    assert world.versions() == [1, 1]
    ready = {c["type"]: c for c in world.cluster.statuses["short-max"]["conditions"]}["Ready"]
    assert ready["status"] == "False"
    assert "firstBanSeconds must not exceed maxBanSeconds" in ready["message"]
    assert sorted(world.cluster.events) == [
        ("long-first", "CannotApply"),
        ("short-max", "CannotApply"),
    ]
    spam_ready = {c["type"]: c for c in world.cluster.statuses["spam"]["conditions"]}["Ready"]
    assert spam_ready["status"] == "True"  # not at fault


async def test_an_object_the_operator_cannot_read_blocks_its_fleet(world: World) -> None:
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    await worker.round(KEY)
    world.log.clear()
    world.inputs.invalid_objs = [
        InvalidObject(ObjectRef("banlists", "ns", "weird", "u9", 3), "blue", "entries.0: bad")
    ]
    world.inputs.banlist_objs = []
    await worker.round(KEY)
    assert world.log == []  # the bans of "spam" were not lifted on any node
    assert world.cluster.events == [("weird", "CannotApply")]


async def test_a_failed_configmap_write_is_retried_and_versions_still_only_grow(
    world: World,
) -> None:
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    world.cluster.write_error = errors.Unavailable("etcd is slow")
    await worker.round(KEY)
    assert world.versions() == [1, 1]  # pushed while the write failed
    world.cluster.write_error = None
    await worker.round(KEY)
    assert world.cluster.annotations is not None
    stored = int(world.cluster.annotations["marketplace.p2p.dev/policy-version"])
    assert stored >= 1
    assert world.versions() == [stored, stored]
    world.inputs.banlist_objs = [banlist("spam", PEER, "peerBBBBBBBB", generation=2)]
    await world.worker().round(KEY)  # a restarted operator
    assert world.versions() == [stored + 1, stored + 1]


async def test_a_write_that_failed_but_landed_keeps_its_version(world: World) -> None:
    """A timed-out write the API server still applied: the next round re-reads the ConfigMap
    and finds the same content there, so no new number is issued for it."""
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    world.cluster.write_error = errors.Unavailable("timed out waiting for the answer")
    world.cluster.write_lands = True
    await worker.round(KEY)
    world.cluster.write_error = None
    world.log.clear()
    await worker.round(KEY)
    assert world.versions() == [1, 1]
    assert world.log == []  # neither a second write nor a second push
    assert world.cluster.annotations is not None
    assert world.cluster.annotations["marketplace.p2p.dev/policy-version"] == "1"


async def test_no_configmap_yet_means_no_push(world: World) -> None:
    world.cluster.annotations = None
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    await world.worker().round(KEY)
    assert world.log == []


def hear_polls(world: World, worker: PolicyWorker) -> None:
    """Every node's status poll, as the node loops make them (`nodeloop._poll_node`)."""
    for node in world.inputs.node_list:
        applied = world.nodes.applied.get(node.base_url)
        worker.heard(KEY, node, None if applied is None else applied[0])


async def test_a_node_that_was_down_converges_in_the_next_round(world: World) -> None:
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    down = world.inputs.node_list[1].base_url
    world.nodes.down.add(down)
    worker = world.worker()
    await worker.round(KEY)
    status = world.cluster.statuses["spam"]
    assert status["convergedNodes"] == "1/2"
    converged = {c["type"]: c for c in status["conditions"]}["PolicyConverged"]
    assert converged["status"] == "False"
    assert "lagging: node-2" in converged["message"]
    assert (
        world.registry.get_sample_value(
            "marketplace_operator_policy_push_failures_total", {"namespace": "ns", "node": "node-2"}
        )
        == 1
    )
    world.nodes.down.clear()
    hear_polls(world, worker)
    assert worker.marked() == {KEY}  # its first answer, behind: news
    hear_polls(world, worker)  # the same again is not news (its round is already due)
    await worker.round(KEY)
    assert world.versions() == [1, 1]
    assert world.cluster.statuses["spam"]["convergedNodes"] == "2/2"


async def test_a_node_that_restarted_empty_is_noticed_from_its_poll(world: World) -> None:
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    await worker.round(KEY)
    del world.nodes.applied[world.inputs.node_list[0].base_url]
    world.log.clear()
    await worker.round(KEY)
    assert world.log == []  # the worker still believes node-1 has v1
    hear_polls(world, worker)
    await worker.round(KEY)
    assert world.log == ["push 127.1.0.1:7070 v1"]


async def test_polls_of_nodes_in_step_mark_nothing(world: World) -> None:
    """A poll marks the fleet only for a node behind (or ahead of) the stored version: each
    mark is a round over the whole fleet, and every node is polled every few seconds."""
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    hear_polls(world, worker)
    assert worker.marked() == set()  # no round has read the ConfigMap: left to the rounds
    await worker.round(KEY)
    hear_polls(world, worker)
    assert worker.marked() == set()
    worker.heard(KEY, target(3), 1)  # a new node that started on the stored version
    assert worker.marked() == set()
    worker.heard(KEY, target(2), 7)  # ahead: the stored version was lost
    assert worker.marked() == {KEY}


async def test_a_new_node_without_the_policy_is_pushed_after_its_first_poll(
    world: World,
) -> None:
    """A pod's start no longer makes a round (a node starts on its mounted ConfigMap's
    policy); a node that started without it is pushed once its first poll says so."""
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    await worker.round(KEY)
    new = target(3)
    world.inputs.node_list.append(new)
    worker.pod_changed(KEY)
    assert worker.marked() == set()
    world.log.clear()
    worker.heard(KEY, new, None)
    assert worker.marked() == {KEY}
    await worker.round(KEY)
    assert world.log == ["push 127.1.0.3:7070 v1"]  # only the new node


async def test_a_new_node_on_the_stored_policy_is_counted_without_a_round(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its first poll refreshes the statuses (paced), and nothing is pushed."""
    monkeypatch.setattr(worker_module, "STATUS_REFRESH_SECONDS", 0.01)
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    await worker.round(KEY)
    assert world.cluster.statuses["spam"]["convergedNodes"] == "2/2"
    world.log.clear()
    new = target(3)
    world.inputs.node_list.append(new)
    worker.pod_changed(KEY)
    worker.heard(KEY, new, 1)
    assert worker.marked() == set()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if world.cluster.statuses["spam"]["convergedNodes"] == "3/3":
            break
    assert world.cluster.statuses["spam"]["convergedNodes"] == "3/3"
    assert world.log == []  # no push: it has the stored version


async def test_pod_changes_make_rounds_until_the_fleet_has_a_stored_policy(
    world: World,
) -> None:
    world.cluster.annotations = None  # no ConfigMap yet: its first node makes it
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    worker.pod_changed(KEY)
    assert worker.marked() == {KEY}
    await worker.round(KEY)  # reads: no ConfigMap; waits for the first node
    worker.pod_changed(KEY)
    assert worker.marked() == {KEY}


@pytest.mark.parametrize("version", [None, 0])
async def test_news_of_a_node_behind_marks_its_fleet(world: World, version: int | None) -> None:
    """Restarted empty (None), or a new node that started on an older ConfigMap (0)."""
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    await worker.round(KEY)
    worker.heard(KEY, target(1), version)
    assert worker.marked() == {KEY}


LOCAL_BAN = LocalBan(
    peer_id=PEER,
    reason="rate_limited",
    offences=4,
    banned_at=START - timedelta(seconds=5),
    expires_at=START + timedelta(minutes=10),
)


async def test_local_bans_become_the_auto_banlist_once(world: World) -> None:
    ban = LOCAL_BAN
    world.nodes.local[world.inputs.node_list[0].base_url] = [ban]
    worker = world.worker()
    worker.state(KEY).local_bans[world.inputs.node_list[0]] = 1  # as its poll counted it
    await worker.collect(KEY)
    (entries,) = world.cluster.auto
    assert entries[0]["peerId"] == PEER
    assert entries[0]["provenance"]["nodes"] == ["node-1"]
    assert entries[0]["provenance"]["offences"] == 4
    # The auto list now exists with those entries: the next collection writes nothing.
    auto = BanList(
        namespace="ns",
        name="blue-auto",
        created=START,
        generation=1,
        spec=BanListSpec.model_validate({"fleet": "blue", "entries": entries}),
    )
    world.inputs.banlist_objs = [auto]
    await worker.collect(KEY)
    assert len(world.cluster.auto) == 1
    assert (
        world.registry.get_sample_value(
            "marketplace_operator_auto_bans",
            {"namespace": "ns", "fleet": "blue", "reason": "rate_limited"},
        )
        == 1
    )


async def test_the_sweep_asks_only_nodes_that_hold_local_bans_or_do_not_say(
    world: World,
) -> None:
    """A node's status poll says how many local bans it holds: the sweep asks a node that
    holds some, or that predates the count (None); not one that holds none (its report
    would be empty) nor one not heard yet (its first poll comes within seconds)."""
    world.inputs.node_list = [target(i) for i in range(1, 4)]
    holds, quiet, old = world.inputs.node_list
    worker = world.worker()
    await worker.round(KEY)

    def asked() -> set[str]:
        got = {line.split()[1] for line in world.log if line.startswith("local-bans")}
        world.log.clear()
        return got

    def host(node: NodeTarget) -> str:
        return node.base_url.removeprefix("http://")

    world.log.clear()
    await worker.collect(KEY)
    assert asked() == set()  # nobody heard yet
    worker.heard(KEY, holds, 1, local_bans=0)
    worker.heard(KEY, quiet, 1, local_bans=0)
    worker.heard(KEY, old, 1, local_bans=None)  # a node that predates the count
    await worker.collect(KEY)
    assert asked() == {host(old)}
    # Its next poll counts a ban: a collection runs at once (not at the next sweep), asks
    # it, and its ban reaches the list; the same count heard again asks for none.
    world.nodes.local[holds.base_url] = [LOCAL_BAN]
    worker.heard(KEY, holds, 1, local_bans=1)
    worker.heard(KEY, holds, 1, local_bans=1)
    for _ in range(100):
        if world.cluster.auto:
            break
        await asyncio.sleep(0.01)
    assert asked() == {host(holds), host(old)}
    (entries,) = world.cluster.auto
    assert entries[0]["provenance"]["nodes"] == [holds.name]
    worker.heard(KEY, holds, 1, local_bans=1)
    await asyncio.sleep(0.05)
    assert asked() == set()


async def test_a_burst_of_changes_costs_few_pushes(world: World) -> None:
    settings = PolicySettings(gather_seconds=0.005, min_interval_seconds=0.05)
    worker = world.worker(clock=SystemClock(), settings=settings)
    runner = asyncio.create_task(worker.run())
    loop = asyncio.get_running_loop()
    try:
        began = loop.time()
        for i in range(100):
            peers = [f"peer{j:08d}" for j in range(i + 1)]
            world.inputs.banlist_objs = [banlist("spam", *peers, generation=i + 1)]
            worker.mark(KEY)
            await asyncio.sleep(0.001)
        burst = loop.time() - began
        final = effective_policy(
            "blue", banlists=world.inputs.banlist_objs, ratelimitpolicies=[], now=datetime.now(UTC)
        )
        assert final.content is not None
        want = content_hash(final.content)
        async with asyncio.timeout(5):
            while {h for _, h in world.nodes.applied.values()} != {want}:  # noqa: ASYNC110 - bounded
                await asyncio.sleep(0.01)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    # One version per round; the nodes hold the last one (its ConfigMap write, after the
    # push, may still be in flight when the loop is cancelled).
    rounds = max(world.versions())
    assert rounds <= burst / settings.min_interval_seconds + 2
    pushes = [line for line in world.log if line.startswith("push")]
    assert len(pushes) == 2 * rounds  # one push per node per round, not per change


async def test_objects_of_a_namespace_without_fleets_still_get_a_status(world: World) -> None:
    world.inputs.fleet_keys = set()
    world.inputs.banlist_objs = [banlist("early", PEER)]
    worker = world.worker()
    worker.mark_namespace("ns")
    async with asyncio.timeout(5):
        while "early" not in world.cluster.statuses:  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.01)
    status = world.cluster.statuses["early"]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["reason"] == "NoNodes"
    assert status["convergedNodes"] == "0/0"


async def test_a_list_added_while_the_fleet_is_frozen_says_it_is_not_enforced(
    world: World,
) -> None:
    """Issue #19 defect 3: a valid list behind a list that cannot apply is not in force."""
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    await worker.round(KEY)
    world.inputs.invalid_objs = [
        InvalidObject(ObjectRef("banlists", "ns", "weird", "u9", 1), "blue", "duration: too long")
    ]
    world.inputs.banlist_objs = [banlist("spam", PEER), banlist("late", "peerBBBBBBBB")]
    await worker.round(KEY)
    late = {c["type"]: c for c in world.cluster.statuses["late"]["conditions"]}
    assert (late["Ready"]["status"], late["Ready"]["reason"]) == ("False", "FleetPolicyFrozen")
    assert "not enforced" in late["Ready"]["message"]
    assert "duration: too long" in late["Ready"]["message"]
    assert late["PolicyConverged"]["status"] == "False"
    spam = {c["type"]: c for c in world.cluster.statuses["spam"]["conditions"]}
    assert spam["Ready"]["reason"] == "Included"  # its entries are in the last good policy
    # Once the bad list goes, the late one is pushed and says so.
    world.inputs.invalid_objs = []
    await worker.round(KEY)
    late = {c["type"]: c for c in world.cluster.statuses["late"]["conditions"]}
    assert (late["Ready"]["status"], late["Ready"]["reason"]) == ("True", "Included")


async def test_a_fleet_recreated_under_its_name_starts_afresh(world: World) -> None:
    """Issue #19 defect 2: the new fleet ConfigMap gets the policy; a list recreated under
    a name that had a CannotApply Event gets a new one."""
    world.inputs.banlist_objs = [banlist("spam", PEER)]
    worker = world.worker()
    await worker.round(KEY)
    world.inputs.invalid_objs = [
        InvalidObject(ObjectRef("banlists", "ns", "weird", "u9", 1), "blue", "entries.0: bad")
    ]
    await worker.round(KEY)
    assert world.cluster.events == [("weird", "CannotApply")]
    # The fleet and the bad list are deleted and created again under the same names.
    world.inputs.configmap_uid = "cm-2"
    world.cluster.annotations = {}
    world.nodes.applied.clear()
    world.inputs.invalid_objs = [
        InvalidObject(ObjectRef("banlists", "ns", "weird", "u10", 1), "blue", "entries.0: bad")
    ]
    world.log.clear()
    await worker.round(KEY)
    assert world.cluster.events == [("weird", "CannotApply"), ("weird", "CannotApply")]
    world.inputs.invalid_objs = []
    await worker.round(KEY)
    assert "configmap v1" in world.log
    assert world.versions() == [1, 1]


def test_the_local_ban_sweep_is_a_fixed_budget_whatever_the_fleet_size() -> None:
    """Issue 15: a sweep per node at a fixed interval grows with the fleet (with the resync
    sweep beside it, 200 admin requests a second at 1,000 nodes); it asks at most
    SWEEP_NODES_PER_SECOND on average, and a small fleet keeps its interval."""
    assert sweep_pause(2.0, 20) == 2.0
    assert sweep_pause(2.0, 0) == 2.0
    for nodes in (100, 1_000, 10_000):
        assert nodes / sweep_pause(2.0, nodes) <= SWEEP_NODES_PER_SECOND
    assert sweep_pause(2.0, 1_000) == 1_000 / SWEEP_NODES_PER_SECOND
