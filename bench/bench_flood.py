"""One abusive client floods a real node while honest clients search.

A node process (`marketplace-node run`) listens on 127.0.0.1. Honest
clients, each from its own loopback source address, search at a steady
pace well under their limit; their latencies are recorded first with the
node unloaded, then while an abuser (a separate process, from its own
source address) floods the same endpoint as fast as it can. Targets: the
honest clients' p99 while flooded stays within 2x of the unloaded p99, and
the abuser ends banned (its last answers are 403 `peer_banned`, and the
node lists its address among its local bans).

Bounded: about 30 s. Run: `python -m bench flood`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.support.net import free_port

HOST = "127.0.0.1"
HONEST_SOURCES = ("127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14")
ABUSER_SOURCE = "127.0.0.66"
HONEST_INTERVAL = 0.05  # 20 searches/s per client, under the default 50/s
PHASE_SECONDS = 8.0
ESCALATION_GRACE = 2.0  # flood before measuring: the abuser must be banned by then
P99_TARGET_RATIO = 2.0
TOKEN = "bench-flood-admin-token"
CLI = str(Path(sys.executable).with_name("marketplace-node"))

ABUSER = """
import asyncio, collections, json, sys, time
import aiohttp
url, source, seconds, concurrency = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
async def main():
    counts, last = collections.Counter(), []
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker():
            while time.monotonic() < deadline:
                try:
                    async with session.get(url) as response:
                        body = await response.read()
                        code = "ok" if response.status == 200 else json.loads(body)["code"]
                except (aiohttp.ClientError, ValueError, KeyError) as exc:
                    code = type(exc).__name__
                counts[code] += 1
                last.append(code)
                del last[:-50]
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(json.dumps({"counts": counts, "last": last}))
asyncio.run(main())
"""


async def wait_ready(private: str) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(90):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{private}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)


async def honest_client(base: str, source: str, seconds: float) -> list[float]:
    """Paced searches from `source`; the latency of each, in milliseconds."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=1)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=connector) as session:
        end = loop.time() + seconds
        next_at = loop.time()
        while next_at < end:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            started = time.perf_counter()
            async with session.get(f"{base}/api/v1/search", params={"q": "bench"}) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"honest client refused: {response.status}")
            latencies.append((time.perf_counter() - started) * 1e3)
            next_at += HONEST_INTERVAL
    return latencies


async def honest_phase(base: str, seconds: float) -> list[float]:
    runs = await asyncio.gather(*(honest_client(base, s, seconds) for s in HONEST_SOURCES))
    return [latency for run in runs for latency in run]


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def local_bans(base: str) -> list[dict[str, object]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/admin/v1/bans/local", headers=headers) as response,
    ):
        return list(json.loads(await response.read())["bans"])


async def run(base: str, private: str) -> float:
    await wait_ready(private)
    await honest_phase(base, 1.0)  # warm-up: connections, caches
    unloaded = await honest_phase(base, PHASE_SECONDS)
    flood_seconds = ESCALATION_GRACE + PHASE_SECONDS + 1
    abuser = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ABUSER,
        f"{base}/api/v1/search?q=flood",
        ABUSER_SOURCE,
        str(flood_seconds),
        "32",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        await asyncio.sleep(ESCALATION_GRACE)
        flooded = await honest_phase(base, PHASE_SECONDS)
        async with asyncio.timeout(flood_seconds + 30):
            out, _ = await abuser.communicate()
    finally:
        if abuser.returncode is None:
            abuser.kill()
            await abuser.wait()
    report = json.loads(out)
    bans = await local_bans(private)
    banned = any(b.get("cidr") == f"{ABUSER_SOURCE}/32" for b in bans)
    last_banned = all(code == "peer_banned" for code in report["last"])
    ratio = p(flooded, 99) / p(unloaded, 99)
    ok = ratio <= P99_TARGET_RATIO and banned and last_banned
    total = sum(report["counts"].values())
    print(
        f"honest search, {len(HONEST_SOURCES)} clients at {1 / HONEST_INTERVAL:.0f}/s each:\n"
        f"  unloaded: p50 {p(unloaded, 50):.1f} ms, p99 {p(unloaded, 99):.1f} ms "
        f"({len(unloaded)} requests)\n"
        f"  flooded:  p50 {p(flooded, 50):.1f} ms, p99 {p(flooded, 99):.1f} ms "
        f"({len(flooded)} requests); p99 ratio {ratio:.2f} (target <= {P99_TARGET_RATIO:.1f})\n"
        f"abuser: {total:,} requests in {flood_seconds:.0f} s ({total / flood_seconds:,.0f}/s): "
        f"{dict(report['counts'])}; ends banned: {banned and last_banned} "
        f"(local ban on {ABUSER_SOURCE}/32: {banned}; last 50 answers peer_banned: {last_banned})"
    )
    print(f"flood: {'ok' if ok else 'TARGET MISSED'}")
    return ratio if ok else float("inf")


def main() -> int:
    print("== flood: honest searches while one client floods a node ==")
    port, private_port = free_port(HOST), free_port(HOST)
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as data:
        env = os.environ | {
            "MARKETPLACE_NODE_HOST": HOST,
            "MARKETPLACE_NODE_PORT": str(port),
            "MARKETPLACE_NODE_PRIVATE_PORT": str(private_port),
            "MARKETPLACE_NODE_DATA_DIR": data,
            "MARKETPLACE_NODE_ADMIN_TOKEN": TOKEN,
            "MARKETPLACE_NODE_LOG_LEVEL": "WARNING",
        }
        log = Path(data) / "node.log"
        with log.open("wb") as out:
            node = subprocess.Popen([CLI, "run"], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            ratio = asyncio.run(run(f"http://{HOST}:{port}", f"http://{HOST}:{private_port}"))
        finally:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
    return 0 if ratio <= P99_TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
