"""The node's core: owns store, index, providers, peers and gossip; runs the background work.

Routes call these methods and nothing else; every peer-facing input arrives
here already parsed and (for the peer protocol) with a verified sender.
Background loops (liveness and peer exchange, anti-entropy, provider
republish, policy directory) are started by `start()` and cancelled and
awaited by `stop()`; both are idempotent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import aiohttp
from marketplace_protocol.admin import ContentBlock, Members, NodeStatus, PeerInfo
from marketplace_protocol.clock import Clock
from marketplace_protocol.errors import (
    AuthorSignatureRequired,
    Blocked,
    ClockSkewed,
    IntegrityError,
    InvalidInput,
    NotFound,
    StaleRecord,
    StorageFull,
    UpstreamFailed,
)
from marketplace_protocol.identity import Identity

from marketplace_node import content, gossip, limits, names, sealing
from marketplace_node.blobs import BlobStore
from marketplace_node.catalogue import Catalogue
from marketplace_node.config import NodeSettings
from marketplace_node.disk import DataVolume
from marketplace_node.drain import DrainCoordinator
from marketplace_node.lifecycle import Lifecycle, State
from marketplace_node.metrics import NodeMetrics
from marketplace_node.model import (
    Announcement,
    AnnouncementKind,
    NameRecord,
    OwnerView,
    PackageMeta,
    PackageView,
    ProviderRecord,
    ProviderView,
    Query,
    SearchPage,
)
from marketplace_node.peer_client import PeerClient
from marketplace_node.peerclocks import PeerClocks
from marketplace_node.peers import PeerTable
from marketplace_node.placement import Replication
from marketplace_node.policy.enforcer import PolicyEnforcer
from marketplace_node.policy.escalation import Offence
from marketplace_node.policy.journal import LocalBanJournal
from marketplace_node.policy.peering import FleetMembers, check_peer
from marketplace_node.providers import ProviderRow, ProviderTable
from marketplace_node.reputation import ReputationBook
from marketplace_node.signing import ReplayCache
from marketplace_node.store import Applied, Store
from marketplace_node.subscribe import SubscriptionHub
from marketplace_node.tls import CertificateFiles

logger = logging.getLogger(__name__)
SEND_CONCURRENCY = 64
ANNOUNCEMENT_ID = "Announcement-Id"  # hint that lets a receiver skip parsing a duplicate
GOSSIP_REACHED = "Gossip-Reached"  # hint: peers that got this push already (`gossip.reached_hint`)


class Published(NamedTuple):
    """What a publish stores: the package, and its announcement (None for an identical
    retry, whose package is the one stored first: a re-signed retry carries another
    `created`, hence another id, but names the same content)."""

    package: PackageMeta
    announcement: Announcement | None


class NodeService:
    """One node: catalogue, peers, gossip, content; `http_api` and `admin` are its only callers."""

    def __init__(
        self,
        settings: NodeSettings,
        *,
        identity: Identity,
        clock: Clock,
        metrics: NodeMetrics,
        rng: random.Random | None = None,
        tls: CertificateFiles | None = None,
    ) -> None:
        self.settings = settings
        self.tls = tls  # the public listener's certificate and the peers' CA, when HTTPS
        self.identity = identity
        self.clock = clock
        self.metrics = metrics
        self.rng = rng or random.Random()  # noqa: S311 - gossip target choice, not security
        data = Path(settings.data_dir)
        self.volume = DataVolume(data)
        self.store = Store(data / "catalogue.sqlite3", self.volume)
        self.blobs = BlobStore(data / "blobs", self.volume)
        self.catalogue = Catalogue()
        self.providers = ProviderTable()
        self.reputation = ReputationBook()
        self.peers = PeerTable(capacity=settings.max_peers)
        self.seen = gossip.SeenCache(clock)
        self.replay = ReplayCache(clock)
        self.peer_clocks = PeerClocks(clock)
        self.hub = SubscriptionHub()
        self.ban_journal = LocalBanJournal(data / "local-bans.jsonl", clock=clock)
        self.enforcer = PolicyEnforcer(
            clock, node_id=identity.peer_id, metrics=metrics, on_local_ban=self.ban_journal.append
        )
        self.bootstrap: tuple[str, ...] = tuple(settings.bootstrap_peers)
        self.members: tuple[str, ...] = ()
        self.fleet_members = FleetMembers()
        # Outside addresses (the fleet's entry Service) by member address, ours included.
        self.externals: dict[str, str] = {}
        self._configured = self.bootstrap
        self.last_seq = 0
        self.drain = DrainCoordinator(
            clock,
            timeout=settings.drain_timeout_seconds,
            settle=settings.termination_settle_seconds,
        )
        self.lifecycle = Lifecycle(on_start=self._on_start, on_stop=self._on_stop)
        self._session: aiohttp.ClientSession | None = None
        self._loops: list[Callable[[], Awaitable[None]]] = []
        self._client: PeerClient | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._pushes: set[asyncio.Task[object]] = set()
        self._send_slots = asyncio.Semaphore(SEND_CONCURRENCY)
        self._fetches: dict[str, asyncio.Future[None]] = {}
        self._invited: collections.Counter[tuple[str, str]] = collections.Counter()
        self.under_replicated = 0
        self._landing: dict[str, asyncio.Future[None]] = {}  # announcements being stored
        self.fresh_store = False
        self._retracted: dict[str, int] = {}  # package id -> `created` of our provider_removed
        self.inline_refused: dict[str, float] = {}  # peer id -> when (`replication.refuses_inline`)

    # -- lifecycle ---------------------------------------------------------------

    async def start(
        self, session: aiohttp.ClientSession, loops: Iterable[Callable[[], Awaitable[None]]]
    ) -> None:
        """Open the store, load the catalogue, start the loops (idempotent, via `Lifecycle`)."""
        self._session, self._loops = session, list(loops)
        await self.lifecycle.start()

    async def stop(self) -> None:
        await self.lifecycle.stop()

    async def _on_start(self) -> None:
        assert self._session is not None
        self._client = PeerClient(
            self._session,
            self.identity,
            self.clock,
            timeout=self.settings.peer_timeout_seconds,
            networks=tuple(self.settings.peer_networks),
            server_name=self.settings.tls_peer_name,
        )
        await asyncio.to_thread(self.blobs.prepare)
        self.fresh_store = await self.store.open()
        self.enforcer.restore_local_bans(await asyncio.to_thread(self.ban_journal.load))
        self.catalogue.load(await self.store.packages(), await self.store.name_records())
        self.providers.load(await self.store.providers(now_wall=self.clock.wall()))
        self.last_seq = await self.store.last_seq()
        # The catalogue just loaded lives as long as the process: move it out of the
        # collector's sight, or every full collection walks all of it (a 90 ms pause
        # at 10,000 packages, the p99 of search).
        gc.collect()
        gc.freeze()
        if self.fresh_store:  # a lost disk: peers must stop counting on our old copies
            self.spawn(self._spread_once_joined(await self.announce_lost_disk()))
        for loop in self._loops:
            self.spawn(loop())
        logger.info("started: %d packages, change seq %d", len(self.catalogue), self.last_seq)

    async def _on_stop(self) -> None:
        self.hub.close_all()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.store.is_open:
            await self.store.close()

    def spawn(self, coro: Awaitable[object]) -> None:
        """Run `coro` in the background; `stop()` cancels and awaits it."""
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def client(self) -> PeerClient:
        if self._client is None:
            raise RuntimeError("service not started")
        return self._client

    @property
    def draining(self) -> bool:
        return not self.drain.ready

    @property
    def in_flight(self) -> int:
        return self.drain.in_flight

    @property
    def configured_peers(self) -> tuple[str, ...]:
        """Bootstrap peers and fleet members, in order, without duplicates (pinned peers)."""
        return self._configured

    @property
    def seeds(self) -> tuple[str, ...]:
        """Peers outside the fleet to greet (the fleet's `peering.seeds`); not needed to join."""
        rule = self.enforcer.policy.peering
        return () if rule is None else rule.seeds

    def advertised(self, *, abroad: bool) -> str:
        """The URL we give a peer: our outside address (from the operator's member list)
        to a peer beyond the fleet when we have one, else the one our fleet dials."""
        mine = self.settings.public_url
        return self.externals.get(mine, mine) if abroad else mine

    def check_peer(self, peer_id: str | None, ip: str) -> None:
        """The peering part of the door: `PeerNotAllowed` for a non-member outside the
        fleet's allowed networks (bans are checked before, by the enforcer)."""
        check_peer(self.enforcer.policy.peering, self.fleet_members, peer_id, ip)

    def joined(self) -> bool:
        """One configured peer has answered (trivially true with none configured)."""
        return len(self.peers) > 0 or not self.configured_peers

    def ready(self) -> bool:
        running = self.lifecycle.state is State.RUNNING
        return running and self.store.is_open and self.joined() and self.drain.ready

    # -- catalogue ---------------------------------------------------------------

    async def accept(
        self,
        ann: Announcement,
        *,
        sender: str | None,
        forward: bool = True,
        reached: frozenset[str] = frozenset(),
    ) -> bool:
        """Verify, forward, store and apply one announcement; False if already known.

        Forwarding happens right after verification, before the durable
        commit: the next hop does not wait for our disk, and nothing we
        forward is unverified.
        """
        if not self._admit(ann, sender=sender, forward=forward, reached=reached):
            return False
        return await self._land(ann)

    def _admit(
        self, ann: Announcement, *, sender: str | None, forward: bool, reached: frozenset[str]
    ) -> bool:
        """The checks of `accept` before its commit (verify, screen, forward); False if seen."""
        if ann.id in self.seen:
            self.metrics.announcements.labels("duplicate").inc()
            return False
        try:
            sealing.verify_announcement(ann)
        except Exception:
            self.metrics.announcements.labels("invalid").inc()
            raise
        entry = ann.package or ann.record
        if entry is not None and entry.created is not None:
            self._check_attested(ann, entry.created, pushed=forward)
        self._screen(entry)
        self.seen.add(ann.id)
        if forward:
            self.forward(ann, sender=sender, reached=reached)
        return True

    async def _land(self, ann: Announcement) -> bool:
        """Commit an admitted announcement and apply it; False if the store already held it."""
        landed = self._landing[ann.id] = asyncio.get_running_loop().create_future()
        try:
            applied = await self.store.apply(ann, now_wall=self.clock.wall())
        except BaseException:
            self.seen.discard(ann.id)  # not stored: a later copy (or sync) must get in
            raise
        finally:
            del self._landing[ann.id]
            landed.set_result(None)
        if applied is None:
            self.metrics.announcements.labels("duplicate").inc()
            return False
        self.metrics.announcements.labels("new").inc()
        self._apply(ann, applied)
        return True

    def _screen(self, entry: PackageMeta | NameRecord | None, *, settled: bool = False) -> None:
        """Refuse (typed, counted) a package or record that the names rule refuses; from a
        client (`settled`), also one that would displace what we hold (see `Catalogue`)."""
        reason = None if entry is None else self.catalogue.refusal(entry, settled=settled)
        if reason is not None:
            assert entry is not None
            self.metrics.name_refusals.labels(reason).inc()
            raise names.refusal(reason, entry)

    def _apply(self, ann: Announcement, applied: Applied) -> None:
        self.last_seq = max(self.last_seq, applied.seq)
        entry = ann.package or ann.record
        if entry is not None:
            for meta in self.catalogue.add(entry):
                if self.blocked(meta) is None:  # a takedown is not streamed to subscribers
                    self.hub.publish(applied.seq, meta)
        rec = ann.provider
        if rec is not None and ann.kind is AnnouncementKind.PROVIDER_REMOVED:
            self.providers.drop(rec.package_id, rec.peer_id, ann.created)
        elif rec is not None and applied.provider:  # else its peer took it back already
            if rec.peer_id == self.identity.peer_id and not self._holds(rec.package_id):
                self._retract(rec.package_id, ann.created)
            else:
                expires = self.clock.wall() + rec.ttl_seconds
                # Interned: a provider serves many packages, its id and address are kept once.
                peer_id, address = sys.intern(rec.peer_id), sys.intern(rec.address)
                row = ProviderRow(rec.package_id, peer_id, address, expires, ann.created)
                self.providers.set(row)
        if ann.kind is AnnouncementKind.PEER_LEAVING:
            self.providers.drop_peer(ann.origin, ann.created)
            self.peers.left(ann.origin, ann.created)

    def forward(
        self, ann: Announcement, *, sender: str | None, reached: frozenset[str] = frozenset()
    ) -> None:
        """Push `ann` on: widely when we are its origin, to `gossip_fanout` peers when relaying,
        none that the sender says it `reached`. Never a package or provider announcement of
        content the fleet took down."""
        if self._announces_blocked(ann):
            return
        fanout = gossip.fanout_for(
            ann,
            self.identity.peer_id,
            origin_fanout=self.settings.gossip_origin_fanout,
            relay_fanout=self.settings.gossip_fanout,
        )
        targets = gossip.forward_targets(
            ann,
            self.peers,
            self.rng,
            fanout=fanout,
            hop_limit=self.settings.gossip_hop_limit,
            sender=sender,
            self_id=self.identity.peer_id,
            reached=reached,
        )
        if not targets:
            return
        body = ann.model_copy(update={"hops": ann.hops + 1}).model_dump_json(by_alias=True).encode()
        hints = {
            ANNOUNCEMENT_ID: ann.id,
            GOSSIP_REACHED: ",".join(gossip.reached_hint(targets, reached)),
        }
        for peer in targets:
            task = asyncio.ensure_future(self._push(peer.peer_id, peer.address, body, hints))
            self._tasks.add(task)
            self._pushes.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(self._pushes.discard)

    def _announces_blocked(self, ann: Announcement) -> bool:
        if ann.package is not None:
            return self.blocked(ann.package) is not None
        if ann.provider is not None:
            meta = self.catalogue.get(ann.provider.package_id)
            return meta is not None and self.blocked(meta) is not None
        return False

    async def _push(self, peer_id: str, address: str, body: bytes, hints: dict[str, str]) -> None:
        async with self._send_slots:
            try:
                await self.client.request(
                    "POST", address, "/p2p/v1/announce", body=body, headers=hints
                )
            except UpstreamFailed as exc:
                status = exc.details.get("status", "")
                # An answer: it refused, or has no room (507 storage_full), but it is alive.
                if status.startswith("4") or status == str(StorageFull.http_status):
                    self.metrics.gossip_sent.labels("refused").inc()
                    return
                self.metrics.gossip_sent.labels("failed").inc()
                self.peers.failed(peer_id)
                logger.debug("push to %s failed: %s", peer_id, exc)
            except Exception as exc:  # one lost push is repaired by anti-entropy
                self.metrics.gossip_sent.labels("failed").inc()
                self.peers.failed(peer_id)
                logger.debug("push to %s failed: %s", peer_id, exc)
            else:
                self.metrics.gossip_sent.labels("ok").inc()
                self.metrics.gossip_bytes.labels("out").inc(len(body))

    async def announce_lost_disk(self) -> Announcement:
        """Before our first hello: `peer_leaving`, dated a second before we started, so peers
        drop our old incarnation's provider records (and the entry of whoever knew it) but
        keep the entry they make for us when we say hello (`PeerTable.left`). It reaches them
        by gossip once we know peers (`_spread_once_joined`), else by their anti-entropy."""
        ann = sealing.announce(
            self.identity, AnnouncementKind.PEER_LEAVING, created=int(self.clock.wall()) - 1
        )
        await self.accept(ann, sender=None)
        return ann

    def _holds(self, package_id: str) -> bool:
        meta = self.catalogue.get(package_id)
        return meta is not None and self.blobs.has(meta.digest)

    def _retract(self, package_id: str, updated: int) -> None:
        """A record naming us for bytes we do not hold, learnt by gossip or sync: our old
        incarnation's, made in the second our `peer_leaving` could not cover (whole seconds),
        or our own of bytes since gone. Take it back with a `provider_removed` of our own,
        dated now but never before the record (a removal wins its second), so peers stop
        counting the copy and repair it. Decided and dated in one step, without an await: a
        copy that lands later is announced after it (`_provider_created`)."""
        created = max(int(self.clock.wall()), updated, self._retracted.get(package_id, 0))
        self._retracted[package_id] = created
        ann = sealing.announce(
            self.identity,
            AnnouncementKind.PROVIDER_REMOVED,
            created=created,
            provider=self._provider_record(package_id),
        )
        logger.info("retracting a provider record of ours for %s: not held here", package_id)
        self.spawn(self.accept(ann, sender=None))

    def _provider_created(self, package_id: str) -> int:
        """`created` for a record of ours: now, or just after our retraction of the same
        package if that is later (it would win a tie, `store._superseded`)."""
        now = int(self.clock.wall())
        retracted = self._retracted.get(package_id)
        if retracted is None or retracted < now:
            self._retracted.pop(package_id, None)
            return now
        return retracted + 1

    async def announce_provider(self, package_id: str) -> None:
        """Say that we hold `package_id`'s bytes."""
        ann = sealing.announce(
            self.identity,
            AnnouncementKind.PROVIDER_ADDED,
            created=self._provider_created(package_id),
            provider=self._provider_record(package_id),
        )
        await self.accept(ann, sender=None)

    async def _spread_once_joined(self, ann: Announcement) -> None:
        """Push `ann` as soon as we know a peer. Left to anti-entropy, each peer heard of
        our lost disk only when its random pull picked us: repairs waited up to a minute."""
        while not self.peers.all():  # noqa: ASYNC110 - the peer table signals nothing
            await asyncio.sleep(0.2)
        self.forward(ann, sender=None)

    async def announce(self, kind: AnnouncementKind, **payload: object) -> list[Announcement]:
        ann = sealing.announce(self.identity, kind, created=int(self.clock.wall()), **payload)  # type: ignore[arg-type]
        await self.accept(ann, sender=None)
        return [ann]

    def _check_fresh(self, created: int) -> None:
        """Entries enter the fleet only fresh: this bounds how far a signer can backdate.
        While most peers say our own clock is off, nothing can be judged: 503."""
        if abs(self.clock.wall() - created) > limits.CLOCK_SKEW_SECONDS:
            if self.peer_clocks.skewed():
                raise ClockSkewed(
                    "this node's wall clock is off from its peers'; it cannot judge `created`",
                    details={"offsetSeconds": f"{self.peer_clocks.offset():.0f}"},
                )
            raise StaleRecord(
                "`created` is outside now ± the clock-skew window; check the clock",
                details={"created": str(created)},
            )

    def _check_attested(self, ann: Announcement, created: int, *, pushed: bool) -> None:
        """An entry from a peer: its origin vouches that it was fresh when it entered (the
        announcement's time is within the window of the entry's), and a push must itself be
        fresh (anti-entropy legitimately delivers old announcements)."""
        if abs(ann.created - created) > limits.CLOCK_SKEW_SECONDS:
            raise StaleRecord(
                "the entry was not fresh when its origin announced it",
                details={"created": str(created), "announced": str(ann.created)},
            )
        if pushed:
            self._check_fresh(ann.created)

    def prepare_publish(self, meta: PackageMeta) -> Published:
        """Check an author-signed package and make our announcement of it, with us as
        provider; for an identical retry (same name, version, content and author) of an
        earlier publish, the package stored first and no announcement. Not committed yet:
        `replication.acknowledge` commits it (`originate`) while the in-sync copies are
        made, and pushes it to the fleet once they answered."""
        if not meta.author_signed:
            raise AuthorSignatureRequired("sign the package with your author key")
        sealing.verify_package(meta)
        self.enforcer.admit_publisher(meta.publisher)
        self.refuse_blocked(meta)
        self._check_fresh(meta.created or 0)
        state = self.catalogue.names.state(meta.name)
        held = self.catalogue.get(state.versions.get(meta.version, ""))
        if held is not None and (held.digest, held.publisher) == (meta.digest, meta.publisher):
            return Published(held, None)  # a retry, perhaps signed again later
        # A stat on the loop, as `blobs.has`: microseconds, where a worker thread's round
        # trip is a wake-up that a loaded machine makes wait.
        size = self.blobs.size(meta.digest)
        if size is None:
            raise InvalidInput("upload the content first (PUT /api/v1/blobs/{digest})")
        if size != meta.size:
            raise InvalidInput("size does not match the uploaded content")
        self._screen(meta, settled=True)
        kind = AnnouncementKind.NEW_VERSION if state.versions else AnnouncementKind.PACKAGE
        ann = sealing.announce(
            self.identity,
            kind,
            created=self._provider_created(meta.id),
            package=meta,
            provider=self._provider_record(meta.id),
        )
        return Published(meta, ann)

    async def record(self, record: NameRecord) -> OwnerView:
        """Apply an owner's signed record (co-owners, transfer, yank) and announce it."""
        sealing.verify_record(record)
        self.enforcer.admit_publisher(record.signer)
        self._check_fresh(record.created)
        self._screen(record, settled=True)
        ann = sealing.announce(
            self.identity,
            AnnouncementKind.NAME_RECORD,
            created=int(self.clock.wall()),
            record=record,
        )
        await self.originate(ann)
        return self.catalogue.owners(record.name)

    async def originate(self, ann: Announcement, *, push: bool = True) -> None:
        """Commit our own announcement, then push it: acknowledged only once durable."""
        self.seen.add(ann.id)
        applied = await self.store.apply(ann, now_wall=self.clock.wall())
        if applied is not None:
            self._apply(ann, applied)
            if push:
                self.forward(ann, sender=None)

    # -- copies ------------------------------------------------------------------

    def replication(self) -> Replication:
        """Factor and minInSync in force (the fleet's, from the operator's policy, else this
        node's settings), capped at the fleet's size as this node knows it (the operator's
        member list, or the peers it knows if that is more)."""
        fleet = self.enforcer.policy.replication
        wanted = (
            Replication(self.settings.replication_factor, self.settings.min_in_sync)
            if fleet is None
            else Replication(fleet.factor, fleet.min_in_sync)
        )
        return wanted.capped(max(len(self.members), self.peers.fleet_size()) + 1)

    def live_holders(self, package_id: str) -> set[str]:
        """Who holds a copy we can count on: us (on disk) and providers that are alive peers."""
        meta = self.catalogue.get(package_id)
        mine = {self.identity.peer_id} if meta and self.blobs.has(meta.digest) else set()
        alive, now = self.peers.alive(), self.clock.wall()
        return mine | {
            r.peer_id for r in self.providers.live(package_id, now) if r.peer_id in alive
        }

    @contextlib.contextmanager
    def inviting(self, peer_id: str, digest: str) -> Iterator[None]:
        """While we ask `peer_id` for a copy, its fetch of these bytes from us is a copy
        (`invited`), charged to its copy budget, not to its `fetch` limit."""
        key = (peer_id, digest)
        self._invited[key] += 1
        try:
            yield
        finally:
            self._invited[key] -= 1
            if self._invited[key] <= 0:
                del self._invited[key]

    def invited(self, peer_id: str, digest: str) -> bool:
        return (peer_id, digest) in self._invited

    def note_holder(self, package_id: str, peer_id: str, address: str) -> None:
        """A peer answered that it holds a copy: count it now, before its announcement."""
        now = self.clock.wall()
        self.providers.set(
            ProviderRow(
                package_id, peer_id, address, now + self.settings.provider_ttl_seconds, int(now)
            )
        )

    def _provider_record(self, package_id: str) -> ProviderRecord:
        return ProviderRecord(
            package_id=package_id,
            peer_id=self.identity.peer_id,
            address=self.settings.public_url,
            ttl_seconds=self.settings.provider_ttl_seconds,
        )

    async def republish_loop(self) -> None:
        """`republish_once` soon after start, then every TTL/3."""
        await asyncio.sleep(min(2.0, self.settings.liveness_interval_seconds))
        while True:
            await self.republish_once()
            await asyncio.sleep(self.settings.provider_ttl_seconds / 3)

    async def republish_once(self) -> int:
        """Re-announce us as provider of each local blob whose record is past a third of its
        life (or missing); returns how many. A restart does not re-announce what was
        announced minutes ago (at 10,000 packages: 10,000 announcements and their pushes
        each time a node started)."""
        now, me = self.clock.wall(), self.identity.peer_id
        fresh = now + self.settings.provider_ttl_seconds * 2 / 3
        self.providers.prune(now)
        await self.store.prune_providers(now_wall=now)
        announced = 0
        for package_id in self.catalogue.ids():
            meta = self.catalogue.get(package_id)
            if meta is None or not self.blobs.has(meta.digest) or self.blocked(meta):
                continue
            if any(
                r.peer_id == me and r.expires_at > fresh
                for r in self.providers.live(package_id, now)
            ):
                continue
            await self.announce_provider(package_id)
            announced += 1
        return announced

    # -- takedowns ----------------------------------------------------------------

    def blocked(self, meta: PackageMeta) -> ContentBlock | None:
        """The fleet's takedown that covers `meta`, if one is in force."""
        return self.enforcer.policy.takedowns.match(meta, now_wall=self.clock.wall())

    def refuse_blocked(self, meta: PackageMeta) -> None:
        """451 `blocked`, with the block's provenance, for content the fleet took down."""
        block = self.blocked(meta)
        if block is not None:
            self.metrics.takedown_refusals.inc()
            raise Blocked(
                "this content was taken down by the fleet's policy",
                details={"id": meta.id, "source": block.source, "reason": block.reason},
            )

    def serves_digest(self, digest: str) -> bool:
        """May a peer fetch these bytes from us? Not when the digest, or every package we
        know with these bytes, is taken down (a block on one name leaves the same bytes
        published under another name servable)."""
        takedowns, now = self.enforcer.policy.takedowns, self.clock.wall()
        if not len(takedowns):
            return True
        if takedowns.blocks_digest(digest, now_wall=now):
            return False
        holders = [
            meta
            for pid in self.catalogue.ids()
            if (meta := self.catalogue.get(pid)) is not None and meta.digest == digest
        ]
        return not holders or any(takedowns.match(m, now_wall=now) is None for m in holders)

    def resolve(self, name: str, wanted: str) -> PackageView:
        """`name@wanted` as `view` shows it; ranges and `latest` pass over versions taken
        down (as over yanked ones), an exact version taken down answers 451."""
        state = self.catalogue.names.state(name)
        hidden = frozenset(
            version
            for version, pid in state.versions.items()
            if (meta := self.catalogue.get(pid)) is not None and self.blocked(meta) is not None
        )
        return self.view(self.catalogue.resolve(name, wanted, hidden=hidden).id)

    # -- queries -----------------------------------------------------------------

    def provider_score(self, package_id: str) -> float:
        """Reputation of the best provider (our own copy counts 1.0; none: 0.0)."""
        peers = self.providers.peers_of(package_id)
        if not peers:
            return 0.0
        mine = self.identity.peer_id
        return max(1.0 if pid == mine else self.reputation.score(pid) for pid in peers)

    def search(self, query: Query) -> SearchPage:
        started, now = self.clock.monotonic(), self.clock.wall()
        page = self.catalogue.search(query, self.provider_score)
        self.metrics.search_seconds.observe(max(0.0, self.clock.monotonic() - started))
        return page.model_copy(
            update={
                "results": tuple(
                    r.model_copy(update={"providers": self.providers.count(r.id, now)})
                    for r in page.results
                    if self.blocked(r.package) is None
                )
            }
        )

    def view(self, package_id: str) -> PackageView:
        meta = self.catalogue.get(package_id)
        if meta is None:
            raise NotFound("no such package", details={"id": package_id})
        self.refuse_blocked(meta)
        rows = self.providers.live(package_id, self.clock.wall())
        return PackageView(
            id=package_id,
            package=meta,
            author=meta.publisher,
            signed_by=meta.signed_by,
            yanked=self.catalogue.yanked(meta),
            downloads=self.catalogue.downloads(package_id),
            local=self.blobs.has(meta.digest),
            providers=tuple(
                ProviderView(
                    peer_id=r.peer_id,
                    address=r.address,
                    reputation=self.reputation.score(r.peer_id),
                )
                for r in rows
            ),
        )

    def live_providers(self, package_id: str) -> list[content.Provider]:
        return [
            content.Provider(r.peer_id, r.address)
            for r in self.providers.live(package_id, self.clock.wall())
            if r.peer_id != self.identity.peer_id
        ]

    async def content_path(self, package_id: str, *, count_download: bool = True) -> Path:
        """The local path of a package's verified content, fetched from providers if needed."""
        meta = self.catalogue.get(package_id)
        if meta is None:
            raise NotFound("no such package", details={"id": package_id})
        self.refuse_blocked(meta)
        await self._obtain(meta)
        if count_download:
            try:
                downloads = await self.store.add_downloads(package_id)
            except StorageFull:  # a full disk must not fail a read of bytes we hold
                self.metrics.downloads_uncounted.inc()
            else:
                self.catalogue.set_downloads(package_id, downloads)
        return self.blobs.path(meta.digest)

    async def _obtain(self, meta: PackageMeta, *, first: content.Provider | None = None) -> None:
        """Hold `meta`'s bytes: fetched from its providers (`first` tried first) unless we
        do; one fetch per digest however many ask at once."""
        if self.blobs.has(meta.digest):
            return
        pending = self._fetches.get(meta.digest)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(meta, first))
            self._fetches[meta.digest] = pending
            pending.add_done_callback(lambda _: self._fetches.pop(meta.digest, None))
        await asyncio.shield(pending)

    async def _fetch(self, meta: PackageMeta, first: content.Provider | None) -> None:
        def attempt(a: content.Attempt) -> None:
            self.metrics.fetches.labels(a.outcome).inc()
            if a.outcome == "integrity":  # served bytes that contradict signed metadata
                self.enforcer.record(a.peer_id, "", Offence.INVALID_DATA)

        providers = self.live_providers(meta.id)
        if first is not None and all(p.peer_id != first.peer_id for p in providers):
            providers.append(first)
        await content.fetch_verified(
            meta,
            providers,
            client=self.client,
            blobs=self.blobs,
            book=self.reputation,
            clock=self.clock,
            transfer_seconds=self.settings.fetch_timeout_seconds,
            on_attempt=attempt,
            first=None if first is None else first.peer_id,
        )
        self._provide(meta)

    def _provide(self, meta: PackageMeta) -> None:
        """The bytes are on disk: answer now, say so to peers in the background (the
        announcement's commit is a second fsync a fetch or a publish's copy need not wait on)."""
        self.spawn(self.announce_provider(meta.id))

    # -- admin surface and drain ----------------------------------------------------

    async def set_members(self, members: Members) -> None:
        """The fleet's members (from the operator) become pinned bootstrap peers."""
        mine = self.settings.public_url
        self.members = tuple(m.address for m in members.members if m.address != mine)
        self.fleet_members = FleetMembers.of(members.members)
        self.externals = {m.address: m.external for m in members.members if m.external}
        self._configured = tuple(dict.fromkeys((*self.bootstrap, *self.members)))
        self.peers.repin(self.configured_peers)

    async def status(self) -> NodeStatus:
        policy = self.enforcer.status
        return NodeStatus(
            peer_id=self.identity.peer_id,
            fleet=self.settings.fleet,
            # The fleet's first: an operator asking for a few (`?peers=`) sees its members.
            peers=[
                PeerInfo(peer_id=p.peer_id, address=p.address)
                for p in sorted(self.peers.all(), key=lambda p: p.foreign)
            ],
            policy_version=policy.version,
            policy_hash=policy.hash,
            draining=self.draining,
            in_flight=self.in_flight,
            ready=self.ready(),
            packages=len(self.catalogue),
            under_replicated=self.under_replicated,
            storage_full=self.volume.full(),
            clock_offset_seconds=round(self.peer_clocks.offset()),
            local_bans=policy.local_bans,
        )

    async def replicate(
        self,
        package_id: str,
        announcement: Announcement | None,
        inline: bytes | None,
        *,
        sender: str,
    ) -> None:
        """A peer asks for a copy (hand-off, publish, repair): learn the package from its
        announcement if new to us while we take its bytes (`inline` when small, else fetched,
        from the asking peer first: that fetch is a copy, charged to the copy budget), then
        hold them verified and fsynced. The announcement is not relayed (its origin pushes it
        to the fleet once its in-sync copies answered; for a repair or hand-off the fleet
        knows it) and, as one from anti-entropy, may be old: a repair copies old packages."""
        meta = self.catalogue.get(package_id)
        learning: Awaitable[object] | None = None
        if announcement is not None and meta is None:
            meta = announcement.package
            if self._admit(announcement, sender=sender, forward=False, reached=frozenset()):
                learning = self._land(announcement)
            elif (landing := self._landing.get(announcement.id)) is not None:
                learning = asyncio.shield(landing)  # its gossip copy is being stored
        if meta is None:
            raise NotFound("no such package", details={"id": package_id})
        self.refuse_blocked(meta)
        if inline is not None:
            taking = self._store(meta, inline, sender)
        else:
            taking = self._obtain(meta, first=self._asker(sender, announcement))
        if learning is None:
            await taking
        else:  # one fsync beside the other, not one after the other
            await asyncio.gather(learning, taking)

    def _asker(self, sender: str, announcement: Announcement | None) -> content.Provider | None:
        """The peer that asks us for a copy, as a provider (it holds the bytes): from our
        peer table, else from its own provider record in the announcement it sent."""
        peer = self.peers.get(sender)
        if peer is not None:
            return content.Provider(sender, peer.address)
        record = None if announcement is None else announcement.provider
        if record is not None and record.peer_id == sender:
            return content.Provider(sender, record.address)
        return None

    async def _store(self, meta: PackageMeta, data: bytes, sender: str) -> None:
        """Bytes a peer sent with its `replicate`: kept only if they hash to the signed digest."""
        if self.blobs.has(meta.digest):
            return

        async def once() -> AsyncIterator[bytes]:
            yield data

        try:
            await self.blobs.write(once(), digest=meta.digest, max_size=meta.size)
        except IntegrityError:
            self.enforcer.record(sender, "", Offence.INVALID_DATA)
            raise InvalidInput(
                "the content sent does not hash to the package's digest",
                details={"package": meta.id},
            ) from None
        self._provide(meta)

    async def settle_pushes(self) -> None:
        """Wait (bounded) for the gossip pushes in flight, e.g. the leaving announcement."""
        pending = [t for t in self._pushes if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=self.settings.peer_timeout_seconds)
