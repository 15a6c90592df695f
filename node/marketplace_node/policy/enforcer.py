"""The door every peer and client request passes: bans, rate limits, pending cap, escalation.

`admit()` is synchronous and allocation-light (a few dict probes and one
GCRA step per limit): the compiled policy is swapped atomically by
`apply()`, so a request sees either the old or the new policy, never a mix,
and the next request after `apply()` returns sees the new one.

Order in `admit()`: bans (peer id, then the networks of the address), then
the per-peer per-operation limit (or, for copies between nodes, the per-peer
copy budget), then the global limit. Checking the
per-peer limit before the global one means a flooding peer is refused
before it spends the global budget that honest peers share.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol

from marketplace_protocol import errors
from marketplace_protocol.admin import (
    LocalBan,
    LocalBans,
    Operation,
    PolicyApplied,
    PolicyDocument,
)
from marketplace_protocol.clock import Clock

from marketplace_node import limits
from marketplace_node.policy import bans as bans_
from marketplace_node.policy.compiled import (
    Change,
    CompiledPolicy,
    check_version,
    compile_policy,
    policy_hash,
)
from marketplace_node.policy.escalation import BanDecision, Offence, Offenders
from marketplace_node.policy.ratelimit import Gcra, KeyedLimiter, Rate

DEFAULT_LOCAL_BAN_CAPACITY: Final = 10_000
"""Local bans kept at once; when full, the tenth expiring soonest makes room (in one batch,
so a flood of new bans costs amortised O(log n) each, not a scan per ban)."""

PENDING_RETRY_AFTER: Final = 1.0
COPY_SCOPE: Final = "copy"
"""The limiter keys of copies between nodes (a `replicate`, and the fetch of the bytes the
asking node invited): their own budget, so clients' fetches never starve a publish's copies."""
COPY_RATE: Final = Rate.of(limits.COPY_LIMIT)
PUBLISHER_SCOPE: Final = "publisher"
"""The limiter keys of author keys (never an `Operation`, so never a peer's key)."""


class EnforcerMetrics(Protocol):
    """What the enforcer reports; `marketplace_node.metrics.NodeMetrics` implements it."""

    def rate_limited(self, operation: str, scope: str) -> None: ...
    def refused_banned(self, operation: str, layer: str) -> None: ...
    def ban_issued(self, reason: str) -> None: ...
    def policy_applied(self, version: int) -> None: ...


@dataclass(frozen=True, slots=True)
class EnforcerStatus:
    version: int | None
    hash: str
    fleet_bans: int
    local_bans: int
    pending: int
    limiter_keys: int = 0  # per-peer limiter entries (bounded by its capacity)
    offenders: int = 0  # escalation histories (bounded by its capacity)


ADDRESS_CACHE: Final = 16_384
"""Parsed source addresses remembered per enforcer (parsing costs more than the rest of admit)."""
INLINE_BANS: Final = 100
"""A policy of at most this many bans is hashed and compiled on the event loop."""

IPV6_CLIENT_PREFIX: Final = 64
"""An anonymous IPv6 client is one /64: a single host usually holds a whole /64, so limiting
or banning one /128 would let it rotate through 2^64 identities."""


def client_network(address: bans_.IpAddress) -> bans_.IpNetwork:
    """The network an anonymous client is limited and banned as: /32 for IPv4, /64 for IPv6."""
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv4Network(address)
    return ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False)


class PolicyEnforcer:
    """Bans, limits and escalation for one node; see the module docstring for the order."""

    def __init__(
        self,
        clock: Clock,
        *,
        node_id: str,
        metrics: EnforcerMetrics | None = None,
        limiter_capacity: int = 100_000,
        offender_capacity: int = 100_000,
        local_ban_capacity: int = DEFAULT_LOCAL_BAN_CAPACITY,
        on_local_ban: Callable[[LocalBan], None] | None = None,
    ) -> None:
        self._clock = clock
        self._node_id = node_id
        self._metrics = metrics
        self._on_local_ban = on_local_ban
        self._policy = compile_policy(None, now_monotonic=clock.monotonic(), now_wall=clock.wall())
        self._global = Gcra(self._policy.global_rate)
        self._limiter = KeyedLimiter(limiter_capacity)
        self._offenders = Offenders(offender_capacity)
        self._local = bans_.BanTable()
        self._local_capacity = local_ban_capacity
        self._pending = 0
        self._slot = _PendingSlot(self)
        self._address = functools.lru_cache(maxsize=ADDRESS_CACHE)(bans_.parse_ip)
        self._client_key = functools.lru_cache(maxsize=ADDRESS_CACHE)(self._anonymous_key)

    # -- the door ---------------------------------------------------------------

    def admit(self, peer_id: str | None, ip: str, op: Operation, *, copy: bool = False) -> None:
        """Let one request in or raise `PeerBanned`, `RateLimited`. A `copy` (see `COPY_SCOPE`)
        is charged to the peer's copy budget instead of its `op` limit; bans still come first."""
        now = self._clock.monotonic()
        policy = self._policy
        banned = self._banned(policy, peer_id, ip, now)
        if banned is not None:
            layer, ban = banned
            if self._metrics is not None:
                self._metrics.refused_banned(op, layer)
            raise errors.PeerBanned("this peer is banned", details={"reason": ban.reason})
        key = peer_id if peer_id is not None else self._client_key(ip)
        scope, bucket = (COPY_SCOPE, COPY_RATE) if copy else ("peer", policy.per_peer[op])
        allowed, retry_after = self._limiter.check((COPY_SCOPE if copy else op, key), now, bucket)
        if not allowed:
            if self._metrics is not None:
                self._metrics.rate_limited(op, scope)
            self.record(peer_id, ip, Offence.RATE_LIMITED)
            raise errors.RateLimited(f"rate limit for {op} exceeded", retry_after=retry_after)
        if self._global.rate is not policy.global_rate:
            self._global.rate = policy.global_rate
        allowed, retry_after = self._global.check(now)
        if not allowed:
            if self._metrics is not None:
                self._metrics.rate_limited(op, "global")
            raise errors.RateLimited("the node is at its request limit", retry_after=retry_after)

    def admit_publisher(self, author: str) -> None:
        """Charge one publish (or owner record) to its author key, or raise `RateLimited`.
        Called only once the author's signature verified: nobody else can spend it."""
        now = self._clock.monotonic()
        key = (PUBLISHER_SCOPE, author)
        allowed, retry_after = self._limiter.check(key, now, self._policy.per_publisher)
        if not allowed:
            if self._metrics is not None:
                self._metrics.rate_limited(Operation.PUBLISH, PUBLISHER_SCOPE)
            raise errors.RateLimited(
                "publish rate limit for this author key exceeded",
                retry_after=retry_after,
                details={"scope": PUBLISHER_SCOPE, "author": author},
            )

    def screen(self, ip: str, op: Operation) -> None:
        """Refuse a banned network before any costly work (reading a body, checking a
        signature); charges no limit, so `admit()` must still follow with the peer id."""
        address = self._address(ip)
        if address is None:
            return
        now = self._clock.monotonic()
        for layer, table in (("fleet", self._policy.bans), ("local", self._local)):
            ban = table.address(address, now)
            if ban is not None:
                if self._metrics is not None:
                    self._metrics.refused_banned(op, layer)
                raise errors.PeerBanned("this address is banned", details={"reason": ban.reason})

    def banned(self, peer_id: str | None, ip: str) -> bool:
        """Is this peer shut out (by id or network, fleet or local ban)? Charges nothing:
        for whom to keep as a peer, not for admitting a request."""
        return self._banned(self._policy, peer_id, ip, self._clock.monotonic()) is not None

    def _anonymous_key(self, ip: str) -> str:
        address = self._address(ip)
        if address is None:
            return ip
        return str(address) if address.version == 4 else str(client_network(address))

    def _banned(
        self, policy: CompiledPolicy, peer_id: str | None, ip: str, now: float
    ) -> tuple[str, bans_.Ban] | None:
        """The layer (`fleet`, `local`) and ban that shut this peer out, if any."""
        if peer_id is not None:
            ban = policy.bans.peer(peer_id, now)
            if ban is not None:
                return "fleet", ban
            ban = self._local.peer(peer_id, now)
            if ban is not None:
                return "local", ban
        address = self._address(ip)
        if address is None:
            return None
        ban = policy.bans.address(address, now)
        if ban is not None:
            return "fleet", ban
        ban = self._local.address(address, now)
        return None if ban is None else ("local", ban)

    def pending(self) -> _PendingSlot:
        """`async with enforcer.pending():` holds one of `maxPendingQueries` slots or raises."""
        return self._slot

    # -- escalation -------------------------------------------------------------

    def record(self, peer_id: str | None, ip: str, offence: Offence) -> BanDecision | None:
        """Count a violation; when it escalates, ban locally (peer id, else the network).

        A banned peer id also counts against its network (`BANNED_IDENTITY`):
        identities are free to mint, so a network whose identities keep getting
        banned is banned itself.
        """
        now = self._clock.monotonic()
        if peer_id is None:
            return self._escalate_network(ip, offence, now)
        decision = self._offenders.record(peer_id, offence, self._policy.escalation, now)
        if decision is not None:
            self._ban(peer_id, None, decision, now)
            self._escalate_network(ip, Offence.BANNED_IDENTITY, now)
        return decision

    def _escalate_network(self, ip: str, offence: Offence, now: float) -> BanDecision | None:
        address = self._address(ip)
        if address is None:
            return None  # no identity and no address: nothing to count against
        key = self._client_key(ip)
        decision = self._offenders.record(key, offence, self._policy.escalation, now)
        if decision is not None:
            self._ban(None, client_network(address), decision, now)
        return decision

    def _ban(
        self,
        peer_id: str | None,
        network: bans_.IpNetwork | None,
        decision: BanDecision,
        now: float,
    ) -> None:
        ban = bans_.Ban(
            peer_id=peer_id,
            network=network,
            reason=decision.reason.value,
            source=self._node_id,
            deadline=now + decision.seconds,
            offences=decision.offences,
            banned_at=self._clock.wall(),
        )
        self._add_local(ban, now)
        if self._metrics is not None:
            self._metrics.ban_issued(decision.reason.value)
        if self._on_local_ban is not None:
            for record in bans_.to_records([ban], now_monotonic=now, now_wall=self._clock.wall()):
                self._on_local_ban(record)

    def _add_local(self, ban: bans_.Ban, now: float) -> None:
        if len(self._local) >= self._local_capacity:
            self._make_room(now)
        self._local.add(ban)

    def _make_room(self, now: float) -> None:
        """Drop expired bans, then the soonest-expiring tenth: amortised O(log n) per ban."""
        self._local.prune(now)
        excess = len(self._local) - self._local_capacity + 1
        if excess <= 0:
            return
        batch = max(excess, self._local_capacity // 10)
        forever = float("inf")
        soonest = heapq.nsmallest(
            batch, self._local, key=lambda b: forever if b.deadline is None else b.deadline
        )
        for ban in soonest:
            self._local.remove(ban)

    # -- policy -----------------------------------------------------------------

    def apply(self, doc: PolicyDocument) -> PolicyApplied:
        """Swap in a new policy atomically; refuses older versions (`StalePolicy`).

        Compiles on the calling thread: fine for small documents and tests; the
        admin API and the policy watcher use `apply_async` instead.
        """
        digest = policy_hash(doc)
        change = check_version(self._policy.version, self._policy.hash, doc.version, digest)
        if change is Change.APPLY:
            clock = self._clock
            compiled = compile_policy(
                doc, now_monotonic=clock.monotonic(), now_wall=clock.wall(), digest=digest
            )
            return self._swap(doc, digest, compiled)
        return PolicyApplied(version=doc.version, hash=digest)

    async def apply_async(self, doc: PolicyDocument) -> PolicyApplied:
        """`apply()` with hashing and compiling in a worker thread: 50,000 bans take about a
        second of CPU, which must not stall every request on the event loop (MAJOR-8). A
        document of at most `INLINE_BANS` bans (a millisecond or two) is applied at once:
        two thread hops cost it more than its compile (a third of a millisecond of CPU,
        measured, and a wait for a worker thread on a busy node)."""
        if len(doc.bans) <= INLINE_BANS:
            return self.apply(doc)
        digest = await asyncio.to_thread(policy_hash, doc)
        change = check_version(self._policy.version, self._policy.hash, doc.version, digest)
        if change is Change.UNCHANGED:
            return PolicyApplied(version=doc.version, hash=digest)
        clock = self._clock
        compiled = await asyncio.to_thread(
            functools.partial(
                compile_policy,
                doc,
                now_monotonic=clock.monotonic(),
                now_wall=clock.wall(),
                digest=digest,
            )
        )
        return self._swap(doc, digest, compiled)

    def _swap(self, doc: PolicyDocument, digest: str, compiled: CompiledPolicy) -> PolicyApplied:
        # Checked again: another document may have been applied while this one compiled.
        change = check_version(self._policy.version, self._policy.hash, doc.version, digest)
        if change is Change.APPLY:
            self._policy = compiled
            if self._metrics is not None:
                self._metrics.policy_applied(doc.version)
        return PolicyApplied(version=doc.version, hash=digest)

    @property
    def policy(self) -> CompiledPolicy:
        return self._policy

    @property
    def tarpit_seconds(self) -> float:
        """How long a banned peer's answer is held, by the policy applied now."""
        return self._policy.escalation.tarpit_seconds

    @property
    def status(self) -> EnforcerStatus:
        policy = self._policy
        return EnforcerStatus(
            version=policy.version,
            hash=policy.hash,
            fleet_bans=len(policy.bans),
            local_bans=len(self._local),
            pending=self._pending,
            limiter_keys=len(self._limiter),
            offenders=len(self._offenders),
        )

    # -- local bans: reporting and persistence -----------------------------------

    def local_bans(self) -> LocalBans:
        now = self._clock.monotonic()
        self._local.prune(now)
        records = bans_.to_records(self._local, now_monotonic=now, now_wall=self._clock.wall())
        return LocalBans(peer_id=self._node_id, bans=records)

    def restore_local_bans(self, records: Iterable[LocalBan]) -> int:
        """Load persisted local bans after a restart; returns how many are still in force."""
        now = self._clock.monotonic()
        restored = bans_.from_records(
            records, source=self._node_id, now_monotonic=now, now_wall=self._clock.wall()
        )
        for ban in restored:
            self._add_local(ban, now)
        return len(restored)

    def active_bans_by_reason(self) -> dict[tuple[str, str], int]:
        """`(layer, reason) -> count` of bans in force, for a scrape-time gauge."""
        now = self._clock.monotonic()
        counts: dict[tuple[str, str], int] = {}
        for layer, table in (("fleet", self._policy.bans), ("local", self._local)):
            for ban in table:
                if ban.active(now):
                    counts[layer, ban.reason] = counts.get((layer, ban.reason), 0) + 1
        return counts

    def prune(self) -> None:
        """Forget expired bans (call now and then; lookups already ignore them)."""
        now = self._clock.monotonic()
        self._local.prune(now)
        self._policy.bans.prune(now)


class _PendingSlot:
    """Counts queries in progress against the policy's cap; refuses rather than queues."""

    __slots__ = ("_enforcer",)

    def __init__(self, enforcer: PolicyEnforcer) -> None:
        self._enforcer = enforcer

    async def __aenter__(self) -> None:
        enforcer = self._enforcer
        if enforcer._pending >= enforcer._policy.max_pending:
            if enforcer._metrics is not None:
                enforcer._metrics.rate_limited("query", "pending")
            raise errors.TooManyPending(
                "too many queries in progress", retry_after=PENDING_RETRY_AFTER
            )
        enforcer._pending += 1

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._enforcer._pending -= 1
