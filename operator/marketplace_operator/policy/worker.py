"""The fleet-policy worker: recompute, persist, push, report — one round per dirty fleet.

Asyncio orchestration over injected ports: `Inputs` (the watch-fed view of
BanLists, RateLimitPolicies and node pods; kopf indexes in production),
`Cluster` (the Kubernetes calls) and a `PolicyClient`
(the nodes' admin API). No kopf, aiohttp or kubernetes import here.

A round for one fleet (`_round`):
1. compute the effective policy from the current inputs (pure); if it cannot
   apply, report on the objects at fault and change nothing anywhere;
2. pick the version (`next_version`: same hash keeps it; new content gets
   one more than both the stored version and any version a node reported);
3. push to every node not known to have this version (bounded, retried), and
   once each node's first attempt has an answer, write the new version to the
   fleet ConfigMap (which a (re)starting node reads from its mounted volume, a
   restarted operator reads its version from, and the nodes' `joined` gate
   compares with). After, not before or beside: a node is "behind on policy"
   once the ConfigMap names a newer version than it applied, so a ConfigMap
   written ahead of the pushes turned off the gate of every node not pushed yet;
   under load (a 10 s push to 1,000 nodes) that was a wave of NotReady pods whose
   status writes slowed the push further (issue 15). Written after, the ConfigMap
   names a version only once every node was told it, and a node behind it is one
   that did not take it; a dead node's retries (up to ~15 s) do not hold the
   ConfigMap back from the nodes that start meanwhile. Still never backwards, because a
   version a node holds is never re-issued for other content: the node answers
   409 and its version becomes the `floor` of the next one;
4. then, apart from the fleet's next round, write (`policy.reporting`) the status of every
   BanList and RateLimitPolicy of the namespace that changed (one writer, on
   difference).

Rounds are triggered through a `Mailbox` (coalescing), by object events, by pod
events until the fleet has a stored policy (`pod_changed`), by `heard` (each node's
applied version, from the status poll its control loop makes anyway: a node that
started behind, missed a push, or restarted empty, converges) and by the local-ban
collection loop (which maintains the fleet's auto BanList). News that changes only
how many nodes applied the policy refreshes the statuses, paced (`STATUS_REFRESH_SECONDS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, NamedTuple, TypeVar

from marketplace_protocol.admin import Peering, PolicyDocument, Replication
from marketplace_protocol.clock import Clock, to_datetime

from marketplace_operator import errors
from marketplace_operator.model.banlist import BanList, BanListEntry
from marketplace_operator.model.ratelimitpolicy import RateLimitPolicy
from marketplace_operator.policy import autoban, propagate
from marketplace_operator.policy.coalesce import Mailbox
from marketplace_operator.policy.effective import Effective, Problem, ProblemKind, effective_policy
from marketplace_operator.policy.metrics import PolicyMetrics
from marketplace_operator.policy.ports import (
    UNREAD,
    Cluster,
    FleetKey,
    FleetState,
    Inputs,
    InvalidObject,
    auto_banlist_name,
)
from marketplace_operator.policy.propagate import NodeTarget, PolicyClient, RetryPolicy
from marketplace_operator.policy.reporting import StatusReporter
from marketplace_operator.policy.settings import PolicySettings
from marketplace_operator.policy.versioning import PolicyVersion, content_hash, next_version, stamp
from marketplace_operator.render.policy import (
    PolicyTooLarge,
    configmap_patch,
    render_policy,
    shard_patches,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

INLINE_ENTRIES = 1_000
"""Below this many entries, computing, hashing and rendering take under ~10 ms: inline."""


class Snapshot(NamedTuple):
    """The inputs of one computation, read on the event loop (the indexes live there)."""

    invalid: list[InvalidObject]
    banlists: list[BanList]
    policies: list[RateLimitPolicy]
    wall: float
    replication: Replication | None
    peering: Peering | None


SWEEP_NODES_PER_SECOND = 25.0
"""The local-ban sweep over every node asks at most this many nodes a second on average:
a fixed budget, whatever the fleet's size (every 2 s up to 50 nodes, every 40 s at 1,000).
Per node, at a fixed interval, it was bookkeeping that grew with the fleet: at 1,000
nodes, with the policy resync sweep beside it, 200 admin requests a second, a fifth of
the operator's CPU, and more still over a rollout that a busy machine stretched (issue 15).
The resync sweep is gone: `heard` takes the same answer from the node loops' polls."""


STATUS_REFRESH_SECONDS = 2.0
"""A change of which nodes a fleet has, or of which applied its policy, rewrites the
namespace's BanList and RateLimitPolicy statuses (their node counts) at most this often:
a rollout of 1,000 nodes is 4,000 such changes, and each refresh counts every node."""


def sweep_pause(interval: float, nodes: int) -> float:
    """The pause before the next sweep: `interval`, or longer for a big fleet."""
    return max(interval, nodes / SWEEP_NODES_PER_SECOND)


def _size(inputs: Snapshot) -> int:
    return sum(len(b.spec.entries) for b in inputs.banlists)


Write = tuple[dict[str, Any], list[dict[str, Any]]]
"""The fleet ConfigMap's patch and the shard ConfigMaps' patches (none when it fits one)."""


def _render(doc: PolicyDocument) -> tuple[Write, int]:
    """The ConfigMap patches and the stored size, rendered once."""
    rendered = render_policy(doc)
    write = (configmap_patch(doc, rendered=rendered), shard_patches(doc, rendered))
    return write, rendered.stored_bytes


def _included(
    key: FleetKey, banlists: list[BanList], policies: list[RateLimitPolicy]
) -> frozenset[tuple[str, int]]:
    """The objects (uid, generation) whose specs the fleet's policy was computed from."""
    return frozenset(
        {(b.uid, b.generation) for b in banlists if b.spec.selects(key.fleet)}
        | {(p.uid, p.generation) for p in policies if p.spec.selects(key.fleet)}
    )


class PolicyWorker:
    def __init__(
        self,
        *,
        inputs: Inputs,
        cluster: Cluster,
        client: PolicyClient,
        metrics: PolicyMetrics,
        settings: PolicySettings,
        clock: Clock,
        tokens: Callable[[FleetKey], Awaitable[str]],
        rng: random.Random | None = None,
    ) -> None:
        """`tokens` is the operator's one admin-token cache (`admintoken.AdminTokens`)."""
        self._inputs = inputs
        self._token = tokens
        self._cluster = cluster
        self._client = client
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._retry = RetryPolicy(
            attempts=settings.attempts,
            base_delay=settings.retry_base_seconds,
            max_delay=settings.retry_max_seconds,
        )
        self._mailbox: Mailbox[FleetKey] = Mailbox(
            quiet=settings.gather_seconds, min_interval=settings.min_interval_seconds
        )
        self._wakeup = asyncio.Event()
        self._marked_at: dict[FleetKey, float] = {}
        self._fleets: dict[FleetKey, FleetState] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._refreshing: dict[str, asyncio.TimerHandle] = {}
        # One local-ban collection at a time per fleet; one asked for by news waits behind.
        self._collecting: dict[FleetKey, asyncio.Lock] = {}
        self._collect_due: set[FleetKey] = set()
        self._reporter = StatusReporter(
            inputs=inputs, cluster=cluster, clock=clock, state=self.state
        )

    async def _cpu(self, fn: Callable[..., T], *args: Any, size: int) -> T:
        """Run a pure computation inline when small (no thread hop), else in a thread: a
        big policy's compute must not stall the event loop that serves every node."""
        if size < INLINE_ENTRIES:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    # --- triggers --------------------------------------------------------------------

    def mark(self, key: FleetKey) -> None:
        now = self._clock.monotonic()
        self._marked_at.setdefault(key, now)
        self._mailbox.mark(key, now)
        self._wakeup.set()

    def pod_changed(self, key: FleetKey) -> None:
        """A node pod of the fleet got, changed or lost its address, or began to answer.

        Before the fleet has a stored policy, a round: its first nodes are what it waits
        for. After, nothing to push: a starting node puts in force the policy its mounted
        ConfigMap holds, and its first status poll (`heard`) tells if it did not. Pushed
        anyway, each of a rollout's 4,000 pod changes at 1,000 nodes was a round over
        the whole fleet (issue 15). The namespace's statuses count nodes: refreshed."""
        fleet = self._fleets.get(key)
        if fleet is None or fleet.stored is None or fleet.stored == UNREAD:
            self.mark(key)
        else:
            self._refresh_statuses(key.namespace)

    def _refresh_statuses(self, namespace: str) -> None:
        """Write the namespace's statuses within `STATUS_REFRESH_SECONDS` (one timer each)."""
        if namespace in self._refreshing:
            return

        def due() -> None:
            del self._refreshing[namespace]
            self._write_statuses_now(namespace)

        loop = asyncio.get_running_loop()
        self._refreshing[namespace] = loop.call_later(STATUS_REFRESH_SECONDS, due)

    def marked(self) -> set[FleetKey]:
        """The fleets waiting for a round."""
        return self._mailbox.pending()

    def mark_namespace(self, namespace: str) -> None:
        """A BanList or RateLimitPolicy changed: every fleet of its namespace may be affected.

        With no fleet there, no round runs; the objects still get a status (`NoNodes`).
        """
        keys = [key for key in self._inputs.fleets() if key.namespace == namespace]
        for key in keys:
            self.mark(key)
        if not keys:
            self._write_statuses_now(namespace)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str | None = None) -> None:
        """Run `work` as one of the worker's tasks (cancelled when `run` ends)."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write_statuses_now(self, namespace: str) -> None:
        self._spawn(self._guarded(self._reporter.write_statuses(namespace), f"status {namespace}"))

    def state(self, key: FleetKey) -> FleetState:
        """What the worker knows of the fleet; a new fleet ConfigMap (the fleet deleted and
        recreated under its name) starts it afresh: stored version, floor, applied versions."""
        uid = self._inputs.fleet_uid(key)
        fleet = self._fleets.get(key)
        if fleet is None or (uid is not None and fleet.uid not in (None, uid)):
            fleet = self._fleets[key] = FleetState(uid=uid)
        elif fleet.uid is None:
            fleet.uid = uid
        return fleet

    def forget_gone(self) -> None:
        """Drop what is known of fleets with neither nodes nor a ConfigMap any more."""
        live = set(self._inputs.fleets())
        for key in [k for k in self._fleets if k not in live]:
            if self._inputs.fleet_uid(key) is None:
                del self._fleets[key]

    # --- loops -----------------------------------------------------------------------

    async def run(self) -> None:
        """Start due rounds until cancelled; at most one round per fleet at a time."""
        try:
            while True:
                self._wakeup.clear()
                for key in self._mailbox.take_due(self._clock.monotonic()):
                    self._spawn(self._guarded_round(key), name=f"policy {key}")
                due = self._mailbox.next_due()
                timeout = None if due is None else max(0.0, due - self._clock.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
        finally:
            for handle in self._refreshing.values():
                handle.cancel()
            self._refreshing.clear()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def collect_forever(self) -> None:
        """Turn the nodes' local bans into the fleets' auto BanLists."""
        pause = self._settings.collect_seconds
        while True:
            await asyncio.sleep(pause)
            self.forget_gone()
            swept = 0
            for key in list(self._inputs.fleets()):
                nodes = list(self._inputs.nodes(key))  # listed once: counted and asked
                swept += len(nodes)
                if key in self._fleets:  # between rounds, only `heard` adds nodes
                    self._fleets[key].keep_only(set(nodes))
                await self._guarded(self.collect(key, nodes), f"local bans {key}")
            pause = sweep_pause(self._settings.collect_seconds, swept)

    async def _guarded(self, work: Any, what: str) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except errors.OperatorError as exc:
            log.warning("%s failed: %s", what, exc.message)
        except Exception:
            log.exception("%s failed unexpectedly", what)

    async def _guarded_round(self, key: FleetKey) -> None:
        try:
            await self._guarded(self.apply(key), f"policy round {key}")
        finally:
            self._mailbox.done(key)
            self._wakeup.set()
        # Status writes of big objects are slow; the fleet is free for its next round meanwhile.
        await self._guarded(self._reporter.write_statuses(key.namespace), f"status {key.namespace}")

    # --- one round -------------------------------------------------------------------

    async def round(self, key: FleetKey) -> None:
        """Apply the fleet's policy, then write the statuses of its namespace."""
        await self.apply(key)
        await self._reporter.write_statuses(key.namespace)

    async def apply(self, key: FleetKey) -> None:
        """Compute, persist and push the fleet's policy (statuses are written separately)."""
        marked_at = self._marked_at.pop(key, self._clock.monotonic())
        fleet = self.state(key)
        nodes = list(self._inputs.nodes(key))
        inputs = self._snapshot(key)
        # CPU-bound for big lists (10,000 bans: ~0.1 s): off the event loop.
        effective = await self._cpu(self._compute, key, inputs, size=_size(inputs))
        if effective.content is None:
            self._set_problem(key, effective)
            return
        if fleet.stored == UNREAD:
            try:
                fleet.stored = await self._cluster.read_version(key)
            except errors.NotFound:
                log.info("fleet %s has no policy ConfigMap yet; waiting for its first node", key)
                return
        digest = await self._cpu(content_hash, effective.content, size=len(effective.content.bans))
        version = next_version(
            fleet.stored, digest, floor=max([fleet.floor, *fleet.applied.values()])
        )
        doc = stamp(effective.content, version)
        write: Write | None = None
        if version != fleet.stored:
            try:
                write, stored_bytes = await self._cpu(_render, doc, size=len(doc.bans))
            except PolicyTooLarge as exc:
                blamed = effective.ban_lists + effective.rate_limit_policies
                self._set_problem(key, effective, message=str(exc), blamed=blamed)
                return
            fleet.changed_at = marked_at if fleet.changed_at is None else fleet.changed_at
            self._observe_size(key, doc.version, len(doc.bans), stored_bytes)
        self._clear_problem(key)
        computed = self._clock.monotonic()
        # The pushes' first attempts, then the ConfigMap (module docstring, step 3). Still never
        # backwards: a crash before the write lands re-issues this number for this hash
        # (nodes answer "unchanged"), or for new content, which nodes refuse with 409 and
        # their version lifts `floor`.
        told = asyncio.Event()
        pushing = asyncio.create_task(self._timed(self._push(key, nodes, doc, told)))
        try:
            await told.wait()  # set by every outcome of `_push`, a raised error too
            written_ms, _ = await self._timed(self._persist(key, version, write))
            pushed_ms, pushed = await pushing  # the retries of nodes that did not answer
        finally:
            pushing.cancel()  # a no-op once done; else apply itself was cancelled
        self._observe_convergence(key, nodes, version)
        if self.state(key).stored == version:
            fleet.included = _included(key, inputs.banlists, inputs.policies)
        if pushed or version.version != (fleet.logged or 0):
            fleet.logged = version.version
            acked = sum(1 for n in nodes if fleet.applied.get(n) == version.version)
            log.info(
                "fleet %s/%s: policy v%d (%d bans) on %d/%d nodes; "
                "compute %.0f ms, push to %d %.0f ms, configmap %.0f ms after first attempts",
                key.namespace, key.fleet, version.version, len(doc.bans), acked, len(nodes),
                (computed - marked_at) * 1000, pushed, pushed_ms, written_ms,
            )  # fmt: skip

    async def _timed(self, work: Awaitable[T]) -> tuple[float, T]:
        started = self._clock.monotonic()
        result = await work
        return (self._clock.monotonic() - started) * 1000, result

    async def _persist(self, key: FleetKey, version: PolicyVersion, write: Write | None) -> None:
        """Store a new version in the fleet ConfigMap; a failure is re-read and retried."""
        if write is None:
            return
        patch, shards = write
        try:
            await self._cluster.write_policy(key, patch, shards)
        except errors.OperatorError as exc:
            log.warning(
                "fleet %s: writing policy v%d failed: %s", key, version.version, exc.message
            )
            # A write that timed out may still have landed: the next round reads the ConfigMap
            # again rather than issuing one more number for the same content.
            self.state(key).stored = UNREAD
            asyncio.get_running_loop().call_later(
                self._settings.retry_round_seconds, self.mark, key
            )
            return
        self.state(key).stored = version

    def _snapshot(self, key: FleetKey) -> Snapshot:
        return Snapshot(
            list(self._inputs.invalid(key.namespace)),
            list(self._inputs.banlists(key.namespace)),
            list(self._inputs.policies(key.namespace)),
            self._clock.wall(),
            self._inputs.replication(key),
            self._inputs.peering(key),
        )

    @staticmethod
    def _compute(key: FleetKey, inputs: Snapshot) -> Effective:
        blocking = [i for i in inputs.invalid if i.fleet in ("*", key.fleet)]
        if blocking:
            message = "; ".join(f"{i.ref.plural}/{i.ref.name}: {i.message}" for i in blocking)
            problem = Problem(
                ProblemKind.INVALID_OBJECT, message, tuple(i.ref.name for i in blocking)
            )
            return Effective(content=None, problems=(problem,))
        return effective_policy(
            key.fleet,
            banlists=inputs.banlists,
            ratelimitpolicies=inputs.policies,
            now=to_datetime(inputs.wall),
            replication=inputs.replication,
            peering=inputs.peering,
        )

    async def _push(
        self, key: FleetKey, nodes: list[NodeTarget], doc: PolicyDocument, told: asyncio.Event
    ) -> int:
        """Push to the nodes not known to have `doc`; how many were sent it. `told` is set
        once each has had its first attempt (or when there is nothing to push, or on error)."""
        try:
            return await self._push_behind(key, nodes, doc, told)
        finally:
            told.set()

    async def _push_behind(
        self, key: FleetKey, nodes: list[NodeTarget], doc: PolicyDocument, told: asyncio.Event
    ) -> int:
        fleet = self.state(key)
        fleet.keep_only(set(nodes))  # a set: a list's `in` was O(N^2), 3 % of CPU at 300
        behind = [n for n in nodes if fleet.applied.get(n) != doc.version]
        if not behind:
            return 0
        token = await self._token(key)
        self._metrics.pushes.labels(key.namespace, key.fleet).inc(len(behind))
        outcomes = await propagate.push_all(
            self._client,
            behind,
            token,
            doc,
            parallelism=self._settings.parallelism,
            retry=self._retry,
            rng=self._rng,
            told=told,
        )
        failed = [o for o in outcomes if o.applied is None]
        for outcome in outcomes:
            if outcome.applied is not None:
                fleet.applied[outcome.node] = outcome.applied
                continue
            self._metrics.push_failures.labels(key.namespace, outcome.node.name).inc()
            if outcome.node_version is not None and outcome.node_version >= doc.version:
                # The node is ahead (the stored version was lost): issue a version above it.
                fleet.floor = max(fleet.floor, outcome.node_version)
                self.mark(key)
        if failed:
            log.warning(
                "fleet %s/%s: policy v%d not acknowledged by %s (first error: %s)",
                key.namespace, key.fleet, doc.version,
                ", ".join(o.node.name for o in failed), (failed[0].error or "")[:300],
            )  # fmt: skip
            # A node that is starting (pod IP before the process listens) or briefly down:
            # try again soon rather than waiting for its next status poll (`heard`).
            asyncio.get_running_loop().call_later(
                self._settings.retry_round_seconds, self.mark, key
            )
        return len(behind)

    def _observe_convergence(
        self, key: FleetKey, nodes: list[NodeTarget], version: PolicyVersion
    ) -> None:
        fleet = self.state(key)
        if fleet.changed_at is None:
            return
        if all(fleet.applied.get(n) == version.version for n in nodes):
            lag = max(0.0, self._clock.monotonic() - fleet.changed_at)
            self._metrics.propagation_seconds.observe(lag)
            fleet.changed_at = None

    def _observe_size(self, key: FleetKey, version: int, bans: int, stored: int) -> None:
        labels = (key.namespace, key.fleet)
        self._metrics.version.labels(*labels).set(version)
        self._metrics.bans.labels(*labels).set(bans)
        self._metrics.policy_bytes.labels(*labels).set(stored)

    def _set_problem(
        self,
        key: FleetKey,
        effective: Effective,
        *,
        message: str | None = None,
        blamed: tuple[str, ...] | None = None,
    ) -> None:
        """Remember why the fleet's policy cannot apply, and whom to blame (for the statuses)."""
        fleet = self.state(key)
        problem = effective.problems[0] if effective.problems else None
        fleet.problem = message or (problem.message if problem else "cannot apply")
        fleet.blamed = blamed if blamed is not None else (problem.objects if problem else ())
        log.warning("fleet %s policy not applied: %s", key, fleet.problem)

    def _clear_problem(self, key: FleetKey) -> None:
        fleet = self.state(key)
        fleet.problem, fleet.blamed = None, ()

    # --- what the nodes say: applied versions, local bans ---------------------------

    def heard(
        self, key: FleetKey, node: NodeTarget, version: int | None, *, local_bans: int | None = None
    ) -> None:
        """A node's applied policy version, as its status poll found it: the node loops poll
        every node anyway, and a sweep of the worker's own asked each node the same question
        again. News of a node behind the stored version (started on an older ConfigMap or
        none, restarted empty, ahead after the stored version was lost) marks the fleet,
        and that round pushes to it; other news (a node heard first, or that caught up)
        refreshes the statuses. Only news: a node that did not answer a push is retried
        (`retry_round_seconds`); marked at every poll meanwhile, 1,000 starting nodes
        made a round over the fleet every 0.1 s. A fleet with no stored version yet is
        left to the rounds its start-up and its pods' events mark (from every poll, a
        fleet whose policy cannot apply would recompute, and post its Event, each time).
        Cheap and synchronous: it is called from every poll. How many local bans the node
        holds (`local_bans`) decides whether the local-ban sweeps ask it (`collect`); a
        node that counts a new one is asked at once, not at the next sweep."""
        fleet = self._fleets.get(key) or self.state(key)  # no index read on every poll
        before = fleet.local_bans.get(node, 0)
        fleet.local_bans[node] = local_bans
        if local_bans and (before is None or local_bans > before):
            self._collect_soon(key)
        if fleet.stored is None or fleet.stored == UNREAD:
            return
        first = node not in fleet.heard
        fleet.heard.add(node)
        known = fleet.applied.get(node)
        if version is None:
            fleet.applied.pop(node, None)
        else:
            fleet.applied[node] = version
        if not first and version == known:
            return
        if version != fleet.stored.version:
            self.mark(key)
        else:
            self._refresh_statuses(key.namespace)

    def _collect_soon(self, key: FleetKey) -> None:
        """A collection of the fleet's local bans now, unless one is already due."""
        if key in self._collect_due:
            return
        self._collect_due.add(key)

        async def collect() -> None:
            self._collect_due.discard(key)
            await self.collect(key)

        self._spawn(self._guarded(collect(), f"local bans {key}"), name=f"local bans {key}")

    async def collect(self, key: FleetKey, nodes: list[NodeTarget] | None = None) -> None:
        """One collection at a time per fleet (`_collect_once`)."""
        async with self._collecting.setdefault(key, asyncio.Lock()):
            await self._collect_once(key, nodes)

    async def _collect_once(self, key: FleetKey, nodes: list[NodeTarget] | None) -> None:
        """One round of local-ban collection into the fleet's auto BanList, from `nodes`
        (default: the fleet's nodes now). Only the nodes whose last status poll counted
        local bans, or did not count them (a node older than the count), are asked: the
        others' reports would be empty, and a node not heard yet is heard within its
        first seconds (it is polled while it joins). Asked every sweep, the fleet's nodes
        were the most frequent admin call of a 1,000-node start (4,700 in 3 minutes,
        issue 15), nearly all of them answering an empty list."""
        nodes = list(self._inputs.nodes(key)) if nodes is None else nodes
        if not nodes:
            return
        counted = self.state(key).local_bans
        asked = [n for n in nodes if counted.get(n, 0) != 0]
        reports = await propagate.collect_local_bans(
            self._client, asked, await self._token(key), parallelism=self._settings.parallelism
        )
        name = auto_banlist_name(key.fleet)
        current = next((b for b in self._inputs.banlists(key.namespace) if b.name == name), None)
        previous: list[BanListEntry] = list(current.spec.entries) if current else []
        entries = autoban.auto_entries(
            reports,
            previous,
            now=to_datetime(self._clock.wall()),
            fleet_size=len(nodes),
            threshold=self._settings.autoban_threshold,
            capacity=self._settings.autoban_capacity,
            max_ttl=timedelta(seconds=self._settings.autoban_max_ttl_seconds),
        )
        self._metrics.set_auto_bans(key.namespace, key.fleet, autoban.bans_by_reason(entries))
        dumped = [e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in entries]
        before = [e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in previous]
        if dumped != before or (current is None and dumped):
            await self._cluster.write_auto_banlist(key, dumped)
