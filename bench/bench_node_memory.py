"""Resident memory of a node fed one million distinct peer ids, content ids and queries.

An in-process `NodeService` (the one `marketplace-node run` builds, on a
temporary data directory) takes two paths, bounded in time:

1. HTTP, a sample: `HTTP_REQUESTS` requests through the node's real aiohttp
   app on loopback (`app.build_apps`, every middleware and the policy door):
   searches with distinct keywords and package lookups of distinct content
   ids.
2. In process, the million: for each of `DISTINCT` identities the calls the
   handlers make, without HTTP framing (a million requests over loopback
   would take far too long): the door (`admit` and `record`, with a strict
   policy, so peers are limited and banned), the peer table, reputation,
   a circuit breaker (a `Breakers` like the peer client's), the replay cache
   (one nonce per peer), the gossip seen-cache (one announcement id per
   content id), a provider record per content id, a search per distinct
   query and a lookup per content id.

Prints RSS before, after each quarter (flat once every table is full) and
after, against the bound, and every bounded table's entries, cap and cost
(`deep_mib`: keys and values included). Exit status 1 if RSS ends above
`RSS_BOUND_MIB` (256 MiB, go-libp2p's resource manager caps its whole system
scope at 128 MiB) or the time budget cut the million short.

Run: `.venv/bin/python -m bench node_memory` or `.venv/bin/python bench/bench_node_memory.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from marketplace_node import allocator, app, limits
from marketplace_node.breaker import DEFAULT_CAPACITY, Breakers
from marketplace_node.config import NodeSettings
from marketplace_node.metrics import NodeMetrics
from marketplace_node.model import Query
from marketplace_node.policy.enforcer import DEFAULT_LOCAL_BAN_CAPACITY
from marketplace_node.policy.escalation import DEFAULT_OFFENDER_CAPACITY, Offence
from marketplace_node.policy.ratelimit import DEFAULT_KEY_CAPACITY
from marketplace_node.providers import ProviderRow
from marketplace_node.service import NodeService
from marketplace_protocol import errors, identity
from marketplace_protocol.admin import Escalation, Limit, Operation, PolicyDocument, RateLimits
from marketplace_protocol.clock import SystemClock
from prometheus_client import CollectorRegistry

from bench import report
from bench.memory import deep_mib, rss_mib

RSS_BOUND_MIB = 256
"""Documented bound: the whole process (interpreter, libraries, the service and every
capped table full) after one million distinct identities, at the default caps (it was
388 MiB before compact keys and the ring-buffer TTL sets: docs/hardening.md)."""
DISTINCT = 1_000_000
BUDGET_SECONDS = 180.0  # the in-process loop stops early (and says so) on a very busy machine
HTTP_REQUESTS = 4_000
HTTP_CONCURRENCY = 16


def policy(version: int, *, strict: bool) -> PolicyDocument:
    """Strict: one request per peer and operation, three offences ban (the tables fill)."""
    limit = Limit(rate=1, burst=1) if strict else Limit(rate=1_000_000, burst=1_000_000)
    limits_ = RateLimits(
        per_peer={op: limit for op in Operation},
        global_=Limit(rate=1_000_000, burst=1_000_000),
        max_pending_queries=100_000,
        escalation=Escalation(threshold=3 if strict else 1_000_000, window_seconds=60),
    )
    return PolicyDocument(version=version, rate_limits=limits_)


async def http_sample(service: NodeService) -> tuple[int, dict[int, int]]:
    """Distinct searches and lookups through the real app; returns (requests, statuses)."""
    server = TestServer(app.build_apps(service).public, host="127.0.0.1")
    await server.start_server()
    statuses: dict[int, int] = {}
    todo = iter(range(HTTP_REQUESTS))
    try:
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                for i in todo:
                    path = (
                        f"/api/v1/search?q=http{i}&tag=t{i}"
                        if i % 2
                        else f"/api/v1/packages/{i:064x}"
                    )
                    async with session.get(server.make_url(path)) as response:
                        await response.read()
                        statuses[response.status] = statuses.get(response.status, 0) + 1

            async with asyncio.timeout(60):
                await asyncio.gather(*(worker() for _ in range(HTTP_CONCURRENCY)))
    finally:
        await server.close()
    return HTTP_REQUESTS, statuses


def feed(
    service: NodeService, breakers: Breakers, first: int, count: int, budget: float
) -> tuple[int, float]:
    """Distinct peers, content ids and queries `first`..`first+count-1` through the handlers'
    calls, for at most `budget` seconds; returns (how many, seconds)."""
    door, clock = service.enforcer, service.clock
    start = time.perf_counter()
    for i in range(first, first + count):
        peer = f"bench{i:059d}"
        cid = f"{i:064x}"
        address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        url = f"http://{address}:7070"
        now, wall = clock.monotonic(), clock.wall()
        with contextlib.suppress(errors.NodeError):
            door.admit(peer, address, Operation.SEARCH)
        door.record(peer, address, Offence.MALFORMED_REQUEST)
        if i % 50 == 0:  # a second offence bans: 20,000 local bans, twice the cap
            door.record(peer, address, Offence.MALFORMED_REQUEST)
        if i % 16 == 0:  # a full table scans for the stalest peer: every 16th (62,500 peers)
            service.peers.seen(peer, url, now)
        service.reputation.failure(peer)
        breakers.failure(peer)
        service.replay.check_and_add(peer, f"nonce{i}")
        service.seen.add(f"announcement-{cid}")
        service.providers.set(ProviderRow(cid, peer, url, wall + 3_600, 1))
        service.search(Query.model_construct(keywords=(f"q{i}",)))  # validated: HTTP path
        with contextlib.suppress(errors.NotFound):
            service.view(cid)
        if i % 10_000 == 0 and time.perf_counter() - start > budget:
            return i + 1 - first, time.perf_counter() - start
    return count, time.perf_counter() - start


def tables(service: NodeService, breakers: Breakers) -> list[tuple[str, int, int, object]]:
    """(name, entries, cap, the table object) of every per-peer or per-message table
    (private fields read: a benchmark may look inside)."""
    status, door = service.enforcer.status, service.enforcer
    return [
        ("rate-limiter keys", status.limiter_keys, DEFAULT_KEY_CAPACITY, door._limiter),
        ("offenders (escalation)", status.offenders, DEFAULT_OFFENDER_CAPACITY, door._offenders),
        ("local bans", status.local_bans, DEFAULT_LOCAL_BAN_CAPACITY, door._local),
        ("peer table", len(service.peers), service.settings.max_peers, service.peers),
        (
            "reputation book",
            len(service.reputation._book),
            int(service.reputation._book.maxsize),
            service.reputation,
        ),
        ("circuit breakers", len(breakers), DEFAULT_CAPACITY, breakers),
        ("replay cache (nonces)", len(service.replay), limits.NONCE_CACHE_MAX, service.replay),
        ("gossip seen-cache", len(service.seen), limits.SEEN_CACHE_MAX, service.seen),
        (
            "provider records (packages)",
            len(service.providers),
            limits.PROVIDER_PACKAGES_MAX,
            service.providers,
        ),
        ("search index (packages)", len(service.catalogue), 0, service.catalogue),
    ]


def main() -> int:
    print("== node memory: one million distinct peer ids, content ids and queries ==")
    allocator.pin_mmap_threshold()  # as `marketplace-node run` does at start
    with tempfile.TemporaryDirectory(prefix="bench-node-memory-") as tmp:
        service = NodeService(
            NodeSettings(data_dir=Path(tmp), port=0),
            identity=identity.Identity.generate(),
            clock=SystemClock(),
            metrics=NodeMetrics(CollectorRegistry()),
        )
        service.enforcer.apply(policy(1, strict=False))
        gc.collect()
        rss_start = rss_mib()
        sent, statuses = asyncio.run(http_sample(service))  # starts and stops the service
        print(f"HTTP: {sent:,} distinct searches and lookups through the app -> {statuses}")
        service.enforcer.apply(policy(2, strict=True))
        breakers = Breakers(service.clock)
        gc.collect()
        rss_before = rss_mib()
        done, elapsed, curve = 0, 0.0, []
        while done < DISTINCT and elapsed < BUDGET_SECONDS:  # RSS at each quarter: flat?
            fed, seconds = feed(service, breakers, done, DISTINCT // 4, BUDGET_SECONDS - elapsed)
            done, elapsed = done + fed, elapsed + seconds
            gc.collect()
            curve.append((done, rss_mib()))
            print(f"  after {done:>9,}: RSS {curve[-1][1]:.0f} MiB", flush=True)
        rss_after = curve[-1][1]
        cut = "" if done == DISTINCT else f" (time budget reached after {done:,})"
        print(
            f"in process: {done:,} distinct peers, content ids and queries in {elapsed:.1f} s{cut}"
        )
        rows = []
        for name, size, cap, table in tables(service, breakers):
            note = "no entry per request" if cap == 0 else f"cap {cap:,}"
            cost = deep_mib(table)
            rows.append((name, f"{size:,}", f"{cap:,}" if cap else "-", f"{cost:.1f}"))
            per_entry = f"{cost * 2**20 / size:5.0f} B/entry" if size else ""
            print(f"  {name:30} {size:>9,}  ({note})  {cost:6.1f} MiB {per_entry}")
        report.add(
            "Every table at its cap: entries and what each costs alone (keys and values "
            "included; `bench.memory.deep_mib`):\n"
        )
        report.add(report.table(["table", "entries", "cap", "MiB"], rows))
        verdict = "ok" if rss_after <= RSS_BOUND_MIB else "ABOVE BOUND"
        print(
            f"RSS: {rss_start:.0f} MiB at start, {rss_before:.0f} MiB after HTTP, "
            f"{rss_after:.0f} MiB after the million (+{rss_after - rss_before:.0f}); "
            f"bound {RSS_BOUND_MIB} MiB: {verdict}"
        )
    return 0 if rss_after <= RSS_BOUND_MIB and done == DISTINCT else 1


if __name__ == "__main__":
    sys.exit(main())
