"""Node benchmarks: search at 10,000 packages, HTTP overhead, gossip spread in a 20-node mesh.

One run prints (targets in brackets):

1. search p50/p99 on 10,000 packages, in-process index and over HTTP [p99 < 5 ms];
2. requests/s of a node endpoint (`/api/v1/status`: policy door, drain
   tracking, metrics) and of `/healthz`, next to a bare aiohttp handler,
   each server in its own process [node >= 50 % of bare];
3. time for a signed announcement to reach every node of a 20-node mesh on
   loopback, measured from the publish call to the last node's
   subscription event (origin + relay signature checks, durable SQLite
   commits on every node) [p99 < 200 ms].

This machine is shared, and one burst of someone else's load used to decide a
result (throughput at equal CPU 41-51 % of bare across runs, search p99 5.25 ms
once and 0.34-0.38 ms otherwise). So both are repeated and the median kept:
the search query set runs `SEARCH_PASSES` times and the p99 is the median of
the passes' p99s; the three servers run `RPS_ROUNDS` interleaved rounds and the
ratio is the median of each round's own ratio (bare and node measured seconds
apart, so a burst lands on one round, not on the result). The spread is printed.

Bounded: about two minutes on two cores. Run: `python -m bench node`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import math
import os
import random
import statistics
import string
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
from marketplace_node import sealing
from marketplace_node.model import AnnouncementKind, PackageDraft, PackageMeta, Query
from marketplace_node.search import SearchIndex
from marketplace_node.store import Store
from marketplace_protocol import identity
from marketplace_protocol.admin import Limit, Operation, PolicyDocument, RateLimits

from bench.memory import cpu_seconds
from tests.support.net import free_port

PACKAGES = 10_000
SEARCH_TARGET_MS = 5.0
RATIO_TARGET = 0.5
GOSSIP_TARGET_MS = 200.0
MESH_SIZE = 20
GOSSIP_SAMPLES = 40
IDLE_SECONDS = 3.0
RPS_SECONDS = 2.0
RPS_ROUNDS = 7
SEARCH_PASSES = 5
RPS_CONCURRENCY = 16
CLI = str(Path(sys.executable).with_name("marketplace-node"))
BARE_SERVER = """
import sys
from aiohttp import web
async def handler(request):
    body = '{"peerId":"x","address":"y","fleet":"default","ready":true}'
    return web.Response(text=body, content_type="application/json")
app = web.Application()
app.router.add_get("/api/v1/status", handler)
web.run_app(app, host=sys.argv[1], port=int(sys.argv[2]), access_log=None, print=None)
"""


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def steady(values: list[float]) -> tuple[float, float, float]:
    """(median, lowest, highest) of repeated measurements: the median is the result,
    the range shows how much the shared machine moved it."""
    return statistics.median(values), min(values), max(values)


# -- catalogue ------------------------------------------------------------------------


def catalogue(rng: random.Random) -> tuple[list[tuple[PackageMeta, int]], list[str], list[str]]:
    vocab = sorted(
        {"".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 9))) for _ in range(3_000)}
    )
    tags = [f"tag{i}" for i in range(60)]
    publisher = identity.Identity.generate()
    packages = []
    for i in range(PACKAGES):
        draft = PackageDraft(
            name=f"{rng.choice(vocab)}-{rng.choice(vocab)}{i}",
            version=f"{rng.randint(0, 9)}.{rng.randint(0, 30)}",
            description=" ".join(rng.choices(vocab, k=rng.randint(8, 16))).capitalize(),
            category=f"cat{rng.randrange(12)}",
            tags=tuple(dict.fromkeys(rng.choices(tags, k=rng.randint(1, 4)))),
            digest=hashlib.sha256(str(i).encode()).hexdigest(),
            size=i,
        )
        meta = sealing.sign_package(publisher, draft, created=1_700_000_000 + i)
        packages.append((meta, int(rng.paretovariate(1.2) * 10)))
    return packages, vocab, tags


def queries(rng: random.Random, vocab: list[str], tags: list[str], count: int) -> list[Query]:
    makers: list[Callable[[], Query]] = [
        lambda: Query(keywords=(rng.choice(vocab),)),
        lambda: Query(keywords=(rng.choice(vocab)[:4],)),  # substring semantics
        lambda: Query(keywords=(rng.choice(vocab), rng.choice(vocab))),
        lambda: Query(tags=(rng.choice(tags),)),
        lambda: Query(tags=(rng.choice(tags),), category=f"cat{rng.randrange(12)}"),
        lambda: Query(keywords=(rng.choice(vocab)[:3],), min_downloads=20),
    ]
    return [rng.choice(makers)() for _ in range(count)]


def bench_index(packages: list[tuple[PackageMeta, int]], qs: list[Query]) -> float:
    index = SearchIndex()
    started = time.perf_counter()
    for meta, downloads in packages:
        index.upsert(meta, downloads)
    build = time.perf_counter() - started
    gc.collect()
    gc.freeze()  # as the node does once its catalogue is loaded (see NodeService._on_start)
    latencies = []
    pass_p99s = []
    hits = 0
    for _ in range(SEARCH_PASSES):
        this_pass = []
        for query in qs:
            t0 = time.perf_counter()
            page = index.search(query, lambda _: 0.5)
            this_pass.append((time.perf_counter() - t0) * 1e3)
            hits += len(page.results)
        pass_p99s.append(pct(this_pass, 0.99))
        latencies += this_pass
    everything = []
    for _ in range(100):
        t0 = time.perf_counter()
        index.search(Query(), lambda _: 0.5)
        everything.append((time.perf_counter() - t0) * 1e3)
    p99, low, high = steady(pass_p99s)
    print(
        f"search, in-process index, {len(index):,} packages (built in {build:.2f} s), "
        f"{len(qs):,} mixed queries x {SEARCH_PASSES} passes: "
        f"p50 {pct(latencies, 0.5):.3f} ms, p99 {p99:.3f} ms (median of the passes' p99s; "
        f"range {low:.3f}-{high:.3f}) [target p99 < {SEARCH_TARGET_MS} ms: "
        f"{'ok' if p99 < SEARCH_TARGET_MS else 'MISSED'}], "
        f"{hits / len(qs) / SEARCH_PASSES:.1f} results/query"
    )
    print(
        f"  match-all query (ranks all {len(index):,}): p50 {pct(everything, 0.5):.2f} ms, "
        f"p99 {pct(everything, 0.99):.2f} ms"
    )
    return p99


# -- node processes ------------------------------------------------------------------


def permissive_policy(directory: Path) -> None:
    wide = Limit(rate=1_000_000, burst=1_000_000)
    doc = PolicyDocument(
        version=1,
        rate_limits=RateLimits(
            per_peer=dict.fromkeys(Operation, wide), global_=wide, max_pending_queries=100_000
        ),
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "policy.json").write_text(doc.model_dump_json(by_alias=True))


async def preload(data_dir: Path, packages: list[tuple[PackageMeta, int]]) -> None:
    origin = identity.Identity.generate()
    store = Store(data_dir / "catalogue.sqlite3")
    await store.open()
    anns = [
        sealing.announce(origin, AnnouncementKind.PACKAGE, created=1, package=meta)
        for meta, _ in packages
    ]
    await store.apply_many(anns, now_wall=time.time())
    await store.close()


@contextlib.asynccontextmanager
async def node_process(
    host: str,
    data_dir: Path,
    *,
    policy_dir: Path,
    bootstrap: str = "",
    extra: dict[str, str] | None = None,
) -> AsyncIterator[tuple[str, str, int]]:
    port, private_port = free_port(host), free_port(host)
    env = os.environ | {
        "MARKETPLACE_NODE_HOST": host,
        "MARKETPLACE_NODE_PORT": str(port),
        "MARKETPLACE_NODE_PRIVATE_PORT": str(private_port),
        "MARKETPLACE_NODE_DATA_DIR": str(data_dir),
        "MARKETPLACE_NODE_POLICY_DIR": str(policy_dir),
        "MARKETPLACE_NODE_BOOTSTRAP_PEERS": bootstrap,
        "MARKETPLACE_NODE_LOG_LEVEL": "WARNING",
        **(extra or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        CLI, "run", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        yield f"http://{host}:{port}", f"http://{host}:{private_port}", proc.pid
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def wait_ok(http: aiohttp.ClientSession, url: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with http.get(url) as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} not ready in {within} s")


async def rps(url: str, server_pid: int, seconds: float = RPS_SECONDS) -> tuple[float, float]:
    """(requests/s, server CPU microseconds per request) for `seconds` of keep-alive load."""
    done = 0
    stop = time.monotonic() + seconds
    cpu_before = cpu_seconds(server_pid)
    connector = aiohttp.TCPConnector(limit=RPS_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < stop:
                async with http.get(url) as resp:
                    await resp.read()
                    if resp.status == 200:
                        done += 1

        await asyncio.gather(*(worker() for _ in range(RPS_CONCURRENCY)))
    cpu = cpu_seconds(server_pid) - cpu_before
    return done / seconds, cpu / max(1, done) * 1e6


async def bench_http(
    packages: list[tuple[PackageMeta, int]], qs: list[Query], root: Path
) -> tuple[float, float]:
    data, policy = root / "search-node", root / "policy"
    permissive_policy(policy)
    await preload(data, packages)
    host = "127.0.0.61"
    async with (
        node_process(host, data, policy_dir=policy) as (url, private, node_pid),
        aiohttp.ClientSession() as http,
    ):
        await wait_ok(http, f"{private}/readyz")
        await asyncio.sleep(1.5)  # the policy watcher applies the permissive policy
        latencies = []
        for query in qs[:1_000]:
            params = [("q", k) for k in query.keywords] + [("tag", t) for t in query.tags]
            if query.category:
                params.append(("category", query.category))
            if query.min_downloads is not None:
                params.append(("minDownloads", str(query.min_downloads)))
            t0 = time.perf_counter()
            async with http.get(f"{url}/api/v1/search", params=params) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            latencies.append((time.perf_counter() - t0) * 1e3)
        print(
            f"search over HTTP (client and round trip included), {len(latencies):,} queries: "
            f"p50 {pct(latencies, 0.5):.2f} ms, p99 {pct(latencies, 0.99):.2f} ms"
        )
        bare_port = free_port(host)
        bare = await asyncio.create_subprocess_exec(
            sys.executable, "-c", BARE_SERVER, host, str(bare_port)
        )
        try:
            bare_url = f"http://{host}:{bare_port}/api/v1/status"
            await wait_ok(http, bare_url)
            # Interleaved rounds. The machine is shared, so wall-clock throughput is
            # noisy; server CPU per request much less so, and their ratio is the
            # throughput ratio at equal CPU, which is what the target asks. Each
            # round's ratio pairs measurements seconds apart; the median round wins.
            bare_runs, status_runs, health_runs = [], [], []
            for _ in range(RPS_ROUNDS):
                bare_runs.append(await rps(bare_url, bare.pid))
                status_runs.append(await rps(f"{url}/api/v1/status", node_pid))
                health_runs.append(await rps(f"{private}/healthz", node_pid))
        finally:
            bare.kill()
            await bare.wait()
    bare_rps, node_status, node_health = (
        statistics.median(r[0] for r in runs) for runs in (bare_runs, status_runs, health_runs)
    )
    bare_cpu, status_cpu, health_cpu = (
        statistics.median(r[1] for r in runs) for runs in (bare_runs, status_runs, health_runs)
    )
    ratio, low, high = steady([b[1] / s[1] for b, s in zip(bare_runs, status_runs, strict=True)])
    print(
        f"requests/s ({RPS_CONCURRENCY} keep-alive clients, "
        f"median of {RPS_ROUNDS} interleaved {RPS_SECONDS:.0f} s rounds, load average "
        f"{os.getloadavg()[0]:.1f}): bare aiohttp {bare_rps:,.0f}; "
        f"node /api/v1/status {node_status:,.0f} ({node_status / bare_rps:.0%} of bare); "
        f"node /healthz {node_health:,.0f} ({node_health / bare_rps:.0%})"
    )
    print(
        f"  server CPU per request: bare {bare_cpu:.0f} us, "
        f"node /api/v1/status {status_cpu:.0f} us, "
        f"/healthz {health_cpu:.0f} us; node throughput at equal CPU {ratio:.0%} of bare "
        f"(median round; rounds {low:.0%}-{high:.0%}) "
        f"[target >= {RATIO_TARGET:.0%}: {'ok' if ratio >= RATIO_TARGET else 'MISSED'}]"
    )
    return ratio, pct(latencies, 0.99)


# -- gossip mesh ------------------------------------------------------------------


async def follow(
    http: aiohttp.ClientSession,
    url: str,
    arrivals: dict[str, list[float]],
    everywhere: dict[str, asyncio.Event],
) -> None:
    async with http.get(
        f"{url}/api/v1/subscribe",
        params={"q": "gossipbench"},
        timeout=aiohttp.ClientTimeout(total=None),
    ) as resp:
        async for line in resp.content:
            if line.startswith(b"data: "):
                package_id = json.loads(line[6:])["id"]
                seen = arrivals.setdefault(package_id, [])
                seen.append(time.perf_counter())
                if len(seen) == MESH_SIZE:
                    everywhere.setdefault(package_id, asyncio.Event()).set()


async def bench_gossip(root: Path) -> float:
    policy = root / "policy"
    fast = {
        "MARKETPLACE_NODE_LIVENESS_INTERVAL_SECONDS": "3",
        "MARKETPLACE_NODE_SYNC_INTERVAL_SECONDS": "60",
    }
    async with contextlib.AsyncExitStack() as stack:
        first_url, first_private, first_pid = await stack.enter_async_context(
            node_process("127.0.0.70", root / "mesh0", policy_dir=policy, extra=fast)
        )
        urls, privates, pids = [first_url], [first_private], [first_pid]
        for i in range(1, MESH_SIZE):
            url, private, pid = await stack.enter_async_context(
                node_process(
                    f"127.0.0.{70 + i}",
                    root / f"mesh{i}",
                    policy_dir=policy,
                    bootstrap=first_url,
                    extra=fast,
                )
            )
            urls.append(url)
            privates.append(private)
            pids.append(pid)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        started = time.monotonic()
        for private in privates:
            await wait_ok(http, f"{private}/readyz", within=180)  # 20 interpreters starting at once
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            sizes = []
            for url in urls:
                async with http.get(f"{url}/api/v1/status") as resp:
                    sizes.append((await resp.json())["peers"])
            if min(sizes) >= MESH_SIZE - 1:
                break
            await asyncio.sleep(0.5)
        print(
            f"mesh: {MESH_SIZE} nodes up and fully meshed in {time.monotonic() - started:.1f} s "
            f"(min peers {min(sizes)})"
        )
        arrivals: dict[str, list[float]] = {}
        everywhere: dict[str, asyncio.Event] = {}
        followers = [asyncio.create_task(follow(http, url, arrivals, everywhere)) for url in urls]
        await asyncio.sleep(1.0)
        rng = random.Random(7)
        author = identity.Identity.generate()
        idle_started, idle_cpu = time.monotonic(), sum(cpu_seconds(pid) for pid in pids)
        await asyncio.sleep(IDLE_SECONDS)
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        idle_rate = (cpu_before - idle_cpu) / (time.monotonic() - idle_started)
        busy_started = time.monotonic()
        load_before = os.getloadavg()[0]
        spread: list[float] = []
        first: list[float] = []
        median: list[float] = []
        try:
            for i in range(GOSSIP_SAMPLES):
                url = rng.choice(urls)
                content = f"gossip sample {i}".encode()
                digest = hashlib.sha256(content).hexdigest()
                async with http.put(f"{url}/api/v1/blobs/{digest}", data=content) as resp:
                    assert resp.status == 201
                draft = PackageDraft(
                    name=f"gossipbench{i}",
                    version="1.0",
                    category="bench",
                    digest=digest,
                    size=len(content),
                )
                meta = sealing.sign_package(author, draft, created=int(time.time()))
                t0 = time.perf_counter()
                async with http.post(
                    f"{url}/api/v1/packages", data=meta.model_dump_json(by_alias=True)
                ) as resp:
                    package_id = (await resp.json())["id"]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        everywhere.setdefault(package_id, asyncio.Event()).wait(), 5
                    )
                got = arrivals.get(package_id, [])
                spread.append((max(got) - t0) * 1e3 if len(got) == MESH_SIZE else math.inf)
                if got:
                    first.append((min(got) - t0) * 1e3)
                    median.append((statistics.median(got) - t0) * 1e3)
                await asyncio.sleep(0.1)
            cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
            cpu -= idle_rate * (time.monotonic() - busy_started)  # liveness, sync, watchers
        finally:
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
    reached = sum(math.isfinite(s) for s in spread)
    p99 = pct(spread, 0.99)
    print(
        f"gossip: {GOSSIP_SAMPLES} signed announcements, "
        f"publish call → all {MESH_SIZE} nodes notified: "
        f"p50 {pct(spread, 0.5):.1f} ms, p99 {p99:.1f} ms, max {max(spread):.1f} ms "
        f"[target p99 < {GOSSIP_TARGET_MS:.0f} ms: "
        f"{'ok' if p99 < GOSSIP_TARGET_MS else 'MISSED'}]; "
        f"{reached}/{GOSSIP_SAMPLES} reached every node within 5 s"
    )
    print(
        f"  first node notified (the origin's own subscriber): p50 {pct(first, 0.5):.1f} ms; "
        f"half the mesh notified: p50 {pct(median, 0.5):.1f} ms; "
        f"CPU of all {MESH_SIZE} nodes per announcement (idle baseline subtracted): "
        f"{cpu / GOSSIP_SAMPLES * 1e3:.0f} ms; "
        f"machine load average {load_before:.1f} on {os.cpu_count()} CPUs"
    )
    return p99


async def run() -> int:
    print("== node: search, HTTP overhead, gossip spread ==")
    rng = random.Random(42)
    t0 = time.perf_counter()
    packages, vocab, tags = catalogue(rng)
    print(
        f"catalogue: {len(packages):,} signed packages generated "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    qs = queries(rng, vocab, tags, 2_000)
    index_p99 = bench_index(packages, qs)
    with tempfile.TemporaryDirectory(prefix="bench-node-") as tmp:
        root = Path(tmp)
        ratio, http_p99 = await bench_http(packages, qs, root)
        gossip_p99 = await bench_gossip(root)
    ok = index_p99 < SEARCH_TARGET_MS and ratio >= RATIO_TARGET and gossip_p99 < GOSSIP_TARGET_MS
    print(
        f"summary: search p99 {index_p99:.2f} ms in-process / {http_p99:.2f} ms HTTP; "
        f"node/bare {ratio:.0%}; "
        f"gossip p99 {gossip_p99:.0f} ms; {'all targets met' if ok else 'a target was MISSED'}"
    )
    return 0 if ok else 1


def main() -> int:
    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
