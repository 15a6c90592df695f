"""Fleet-policy propagation: a BanList change to enforcement on every node, three ways.

On one fleet of `BENCH_POLICY_NODES` (default 50) real node processes, in one run:

1. push — the operator (ConfigMap write and `PUT /admin/v1/policy` to every node at once);
2. ConfigMap volume only — the operator's policy path off; the same document written to the
   fleet ConfigMap, which the kubelet projects into each pod and the node re-reads.
   The local kubelet refreshes projected ConfigMaps on a watch event (so the
   *measured* number is optimistic); a real kubelet refreshes them on its periodic
   sync, default `syncFrequency` 1 min (Kubernetes docs, "Mounted ConfigMaps are
   updated automatically"): the *modelled* number adds a sync phase spread
   uniformly over 0-60 s across nodes and trials;
3. direct watch — the operator's policy path off; one informer per node (a watch on BanLists
   held by this process, one connection per node, as if every node held API
   credentials), each recomputing the policy and applying it to its own node.

"Enforcement" is a signed peer request from the banned identity answered with 403
`peer_banned`, polled on every node every `POLL` seconds (the resolution). Before the
trials the fleet gets a RateLimitPolicy with `escalation.tarpitSeconds: 0`, enforced by all
three paths alike: the probe measures when the refusal is *decided*, and the node's
deliberate hold of a banned peer's answer (1 s by default) would add a constant second to
every measurement. A change
is a JSON merge patch of a BanList through the API (not a `kubectl` process, whose
start-up would dominate). Reported: p50/p99 of the time until *every* node refuses,
and of single nodes; ratios against the targets (push p99 < 0.5 s; at least 100 times faster than
the ConfigMap path; within 1.5 times direct watch). Then 10,000 bans in five BanLists:
convergence time and the operator's RSS.

Takedowns (issue #13: "within the same p99 as bans") travel the same push path: right after
the push trials, `BENCH_POLICY_TRIALS` packages published on one node and known on every node
are blocked one per trial by a `digest` entry of another BanList; a node enforces it when it
answers 451 for the package. Reported beside the ban push p99 of the same run.

Run: `make bench` (or `KUBECONFIG=… .venv/bin/python -m bench policy_propagation`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import urllib3
from kubernetes import client, config, watch
from marketplace_node import sealing, signing
from marketplace_node.model import PackageDraft
from marketplace_operator import errors, k8s
from marketplace_operator.handlers.policy import (
    BANLISTS,
    RATELIMITPOLICIES,
    parse_banlist,
    parse_policy,
)
from marketplace_operator.model.banlist import BanList
from marketplace_operator.model.common import API_VERSION, GROUP, VERSION
from marketplace_operator.model.ratelimitpolicy import RateLimitPolicy
from marketplace_operator.policy.effective import effective_policy
from marketplace_operator.policy.versioning import PolicyVersion, content_hash, stamp
from marketplace_operator.render.policy import configmap_patch
from marketplace_protocol.identity import Identity

from bench import cluster, report

if TYPE_CHECKING:
    from matplotlib.axes import Axes

N = int(os.environ.get("BENCH_POLICY_NODES", "50"))
TRIALS = int(os.environ.get("BENCH_POLICY_TRIALS", "15"))
FLEET = "bench"
NO_TARPIT = "bench-no-tarpit"
POLL = 0.02
KUBELET_SYNC_SECONDS = 60.0
TARGET_P99 = 0.5
TARGET_VS_CONFIGMAP = 100.0
TARGET_VS_WATCH = 1.5
PATH = "/p2p/v1/changes"
QUERY = "after=0&limit=1"


# --- the fleet --------------------------------------------------------------------------


def _policy(*, enabled: bool) -> dict[str, str]:
    """The operator's environment: fleet policy off for the baselines (they keep the node
    reconcilers' load, only the policy path is absent)."""
    return {"MARKETPLACE_OPERATOR_POLICY_ENABLED": "true" if enabled else "false"}


def _quietly(probe: Callable[[], Any]) -> Any:
    """A probe's answer; an overloaded API server's timeout is "not yet", not a failure."""
    try:
        return probe()
    except errors.Unavailable:
        return None


def _retrying(call: Callable[[], Any], *, attempts: int = 5) -> Any:
    """An API call retried on timeouts (creates are idempotent: AlreadyExists is None)."""
    for attempt in range(attempts):
        try:
            return call()
        except errors.Unavailable:
            if attempt == attempts - 1:
                raise
            time.sleep(1.0)
    return None


def _serving_ips(kube: k8s.BlockingKube, namespace: str) -> dict[str, str]:
    http = urllib3.PoolManager(maxsize=8)
    ips = {}
    for pod in kube.list(k8s.PODS, namespace):
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or pod["metadata"].get("deletionTimestamp"):
            continue
        with contextlib.suppress(urllib3.exceptions.HTTPError):
            url = f"http://{ip}:9070/healthz"
            if http.request("GET", url, timeout=1.0, retries=False).status == 200:
                ips[pod["metadata"]["name"]] = ip
    return ips


def _make_fleet(kube: k8s.BlockingKube, namespace: str) -> dict[str, str]:
    for i in range(N):
        kube.create(
            k8s.MNODES,
            {
                "apiVersion": API_VERSION,
                "kind": "MarketplaceNode",
                "metadata": {"name": f"n{i:02d}", "namespace": namespace},
                "spec": {"fleet": FLEET},
            },
        )
    found: dict[str, str] = {}

    def all_up() -> bool:
        found.update(_serving_ips(kube, namespace))
        return len(found) >= N

    took = cluster.wait(
        f"{N} node processes serving", lambda: _quietly(all_up), deadline=900, interval=0.2
    )
    print(f"fleet of {N} nodes serving after {took:.0f} s")
    return found


# --- measuring enforcement ----------------------------------------------------------------


async def _refused(session: aiohttp.ClientSession, ip: str, ident: Identity) -> bool:
    headers = signing.sign_request(
        ident, method="GET", path=PATH, query=QUERY, created=int(time.time())
    )
    try:
        async with session.get(f"http://{ip}:7070{PATH}?{QUERY}", headers=headers) as resp:
            if resp.status != 403:
                return False
            return bool((await resp.json()).get("code") == "peer_banned")
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _taken_down(session: aiohttp.ClientSession, ip: str, package_id: str) -> bool:
    try:
        async with session.get(f"http://{ip}:7070/api/v1/packages/{package_id}") as resp:
            return resp.status == 451
    except (aiohttp.ClientError, TimeoutError):
        return False


Probe = Callable[[aiohttp.ClientSession, str], Awaitable[bool]]


async def _enforcement(
    ips: dict[str, str], ident: Identity | Probe, started: float, *, deadline: float
) -> dict[str, float]:
    """Seconds from `started` (monotonic) until each node refuses `ident` (a peer's request),
    or until the probe says it enforces the change."""
    timeout = aiohttp.ClientTimeout(total=2.0)
    connector = aiohttp.TCPConnector(limit=len(ips) + 4)
    probe: Probe = (
        (lambda session, ip: _refused(session, ip, ident)) if isinstance(ident, Identity) else ident
    )
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def one(ip: str) -> float:
            while time.monotonic() - started < deadline:
                if await probe(session, ip):
                    return time.monotonic() - started
                await asyncio.sleep(POLL)
            return float("inf")

        names = list(ips)
        times = await asyncio.gather(*(one(ips[n]) for n in names))
        return dict(zip(names, times, strict=True))


@dataclass
class Samples:
    fleet: list[float] = field(default_factory=list)  # per trial: every node refuses
    node: list[float] = field(default_factory=list)  # per trial and node

    def add(self, per_node: dict[str, float]) -> None:
        self.fleet.append(max(per_node.values()))
        self.node.extend(per_node.values())


def _pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _trials(
    label: str, ips: dict[str, str], change: Callable[[Identity], None], *, deadline: float
) -> Samples:
    samples = Samples()
    for _ in range(TRIALS):
        ident = Identity.generate()
        started = time.monotonic()
        change(ident)
        samples.add(asyncio.run(_enforcement(ips, ident, started, deadline=deadline)))
        time.sleep(0.3)
    print(
        f"{label:<28} every node: p50 {_pct(samples.fleet, 50) * 1000:7.0f} ms"
        f"  p99 {_pct(samples.fleet, 99) * 1000:7.0f} ms"
        f"   single node: p50 {_pct(samples.node, 50) * 1000:6.0f} ms"
        f"  p99 {_pct(samples.node, 99) * 1000:6.0f} ms"
    )
    return samples


# --- the three paths ------------------------------------------------------------------------


class BanListWriter:
    """Grows one BanList by one peer per change, through the API."""

    def __init__(self, kube: k8s.BlockingKube, namespace: str) -> None:
        self.kube, self.namespace, self.peers = kube, namespace, list[str]()
        kube.create(BANLISTS, _banlist(namespace, "bench", []))

    def add(self, ident: Identity) -> None:
        self.peers.append(ident.peer_id)
        entries = [{"peerId": p, "reason": "bench"} for p in self.peers]
        self.kube.patch(BANLISTS, self.namespace, "bench", {"spec": {"entries": entries}})


def _banlist(namespace: str, name: str, peers: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "BanList",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"fleet": FLEET, "entries": [{"peerId": p, "reason": "bench"} for p in peers]},
    }


class ConfigMapOnly:
    """Writes the policy to the fleet ConfigMap exactly as the operator does, and nothing else."""

    def __init__(self, kube: k8s.BlockingKube, namespace: str, writer: BanListWriter) -> None:
        self.kube, self.namespace, self.writer = kube, namespace, writer
        self.policies = [_rate_limit_policy(p) for p in kube.list(RATELIMITPOLICIES, namespace)]
        cm = kube.get(k8s.CONFIGMAPS, namespace, f"{FLEET}-policy") or {}
        annotations = cm.get("metadata", {}).get("annotations") or {}
        self.version = int(annotations.get("marketplace.p2p.dev/policy-version", "0"))

    def add(self, ident: Identity) -> None:
        self.writer.peers.append(ident.peer_id)
        self.version += 1
        body = _banlist(self.namespace, "bench", self.writer.peers)
        body["metadata"]["creationTimestamp"] = datetime.now(UTC).isoformat()
        doc = _document([parse_banlist(body)], self.policies, self.version)  # type: ignore[list-item]
        self.kube.patch(k8s.CONFIGMAPS, self.namespace, f"{FLEET}-policy", configmap_patch(doc))


def _no_tarpit(namespace: str) -> dict[str, Any]:
    """The bench fleet's RateLimitPolicy: banned peers answered at once (module docstring)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "RateLimitPolicy",
        "metadata": {"name": NO_TARPIT, "namespace": namespace},
        "spec": {"fleet": FLEET, "escalation": {"tarpitSeconds": 0}},
    }


def _rate_limit_policy(body: dict[str, Any]) -> RateLimitPolicy:
    parsed = parse_policy(body)
    if not isinstance(parsed, RateLimitPolicy):
        raise ValueError(f"RateLimitPolicy {body['metadata']['name']} is invalid: {parsed}")
    return parsed


def _document(banlists: list[BanList], policies: list[RateLimitPolicy], version: int) -> Any:
    effective = effective_policy(
        FLEET, banlists=banlists, ratelimitpolicies=policies, now=datetime.now(UTC)
    )
    assert effective.content is not None
    return stamp(effective.content, PolicyVersion(version, content_hash(effective.content)))


class Informers:
    """One BanList watch per node, each applying the recomputed policy to its own node.

    The stand-in for "every node watches the API server": N watch connections, N
    independent caches and computations; the admin PUT to the node over loopback
    stands in for the node applying the policy in process.
    """

    def __init__(self, namespace: str, ips: dict[str, str], token: str, base: int) -> None:
        configuration = client.Configuration()
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.connection_pool_maxsize = len(ips) + 8
        self.api = client.CustomObjectsApi(client.ApiClient(configuration))
        self.namespace, self.ips, self.token = namespace, ips, token
        self.http = urllib3.PoolManager(maxsize=len(ips) + 8)
        self.stopping = threading.Event()
        self.versions = dict.fromkeys(ips, base + 1_000)  # above anything the operator issued
        self.threads = [
            threading.Thread(target=self._run, args=(name,), daemon=True, name=f"informer {name}")
            for name in ips
        ]
        self.ready = threading.Barrier(len(ips) + 1)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()
        self.ready.wait(120)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(15)

    def _run(self, name: str) -> None:
        # Listed once, not watched: the bench's RateLimitPolicy does not change during the trials.
        policies = cast(
            "dict[str, Any]",
            self.api.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "ratelimitpolicies"
            ),
        )
        limits = [_rate_limit_policy(item) for item in policies["items"]]
        cache: dict[str, BanList] = {}
        listed = cast(
            "dict[str, Any]",
            self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "banlists"),
        )
        for item in listed["items"]:
            cache[item["metadata"]["name"]] = parse_banlist(item)  # type: ignore[assignment]
        rv = listed["metadata"]["resourceVersion"]
        self.ready.wait(120)
        while not self.stopping.is_set():
            stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                self.api.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                "banlists", resource_version=rv, timeout_seconds=2,
            )  # fmt: skip
            for event in stream:
                obj = event["object"]
                rv = obj["metadata"]["resourceVersion"]
                if event["type"] == "DELETED":
                    cache.pop(obj["metadata"]["name"], None)
                else:
                    cache[obj["metadata"]["name"]] = parse_banlist(obj)  # type: ignore[assignment]
                self._apply(name, list(cache.values()), limits)

    def _apply(self, name: str, banlists: list[BanList], limits: list[RateLimitPolicy]) -> None:
        self.versions[name] += 1
        doc = _document(banlists, limits, self.versions[name])
        self.http.request(
            "PUT", f"http://{self.ips[name]}:9070/admin/v1/policy",
            body=doc.model_dump_json(by_alias=True).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            timeout=5.0, retries=False,
        )  # fmt: skip


def _token(kube: k8s.BlockingKube, namespace: str) -> str:
    secret = kube.get(k8s.SECRETS, namespace, f"{FLEET}-admin")
    assert secret is not None
    return base64.b64decode(secret["data"]["token"]).decode()


def _big_lists(namespace: str, target: Identity) -> list[dict[str, Any]]:
    lists = []
    for part in range(5):
        peers = [f"bulk{part}x{i:07d}" for i in range(2000)]
        if part == 4:
            peers[-1] = target.peer_id
        lists.append(_banlist(namespace, f"bulk-{part}", peers))
    return lists


# --- the run ------------------------------------------------------------------------------


def _report(push: Samples, cm: Samples, watched: Samples) -> int:
    phase = [((i * 0.618_034) % 1.0) * KUBELET_SYNC_SECONDS for i in range(len(cm.node))]
    modelled_nodes = [t + p for t, p in zip(cm.node, phase, strict=True)]
    per_trial = len(cm.node) // max(1, len(cm.fleet))
    modelled_fleet = [
        max(modelled_nodes[i : i + per_trial]) for i in range(0, len(modelled_nodes), per_trial)
    ]
    sync = f"{KUBELET_SYNC_SECONDS:.0f}"
    print(
        f"{'ConfigMap, real kubelet':<28} every node: p50 {_pct(modelled_fleet, 50):7.1f} s "
        f"  p99 {_pct(modelled_fleet, 99):7.1f} s    (modelled: measured + 0-{sync} s sync phase)"
    )
    p99 = _pct(push.fleet, 99)
    vs_cm_local = _pct(cm.fleet, 50) / _pct(push.fleet, 50)
    vs_cm = _pct(modelled_fleet, 50) / _pct(push.fleet, 50)
    vs_watch = _pct(push.fleet, 99) / _pct(watched.fleet, 99)
    print(f"push p99 every node: {p99 * 1000:.0f} ms (target < {TARGET_P99 * 1000:.0f} ms)")
    print(f"ConfigMap(local kubelet) / push, p50: {vs_cm_local:6.1f}x")
    target_cm = f"{TARGET_VS_CONFIGMAP:.0f}"
    print(f"ConfigMap(real kubelet) / push, p50:  {vs_cm:6.1f}x (target >= {target_cm}x)")
    print(f"push / direct watch, p99:             {vs_watch:6.2f}x (target <= {TARGET_VS_WATCH}x)")
    met = p99 < TARGET_P99 and vs_cm >= TARGET_VS_CONFIGMAP and vs_watch <= TARGET_VS_WATCH

    def draw(ax: Axes) -> None:
        for label, values in (
            ("push (operator -> admin API)", push.node),
            ("direct watch (lower bound)", watched.node),
            ("ConfigMap, local kubelet", cm.node),
            ("ConfigMap, real kubelet (modelled)", modelled_nodes),
        ):
            xs = sorted(values)
            ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("seconds from the policy change until a node enforces it")
        ax.set_ylabel("share of (node, trial)")
        ax.legend()

    report.plot("policy-propagation-cdf", "Policy propagation to each node (CDF)", draw)
    return 0 if met else 1


# --- takedowns: content blocks travel the same path ------------------------------------------


def _published_everywhere(ips: dict[str, str], count: int) -> list[tuple[str, str]]:
    """(package id, digest) of `count` packages published on one node and known on every node:
    what the takedown trials block. Paced under the default per-address publish limit."""
    author, first = Identity.generate(), next(iter(ips.values()))
    pool = urllib3.PoolManager(maxsize=8)
    published = []
    for i in range(count):
        content = f"takedown trial {i} {uuid.uuid4()}".encode()
        digest = hashlib.sha256(content).hexdigest()
        draft = PackageDraft(
            name=f"takedown-{i}",
            version="1.0.0",
            category="bench",
            digest=digest,
            size=len(content),
        )
        meta = sealing.sign_package(author, draft, created=int(time.time()))
        for method, path, body in (
            ("PUT", f"/api/v1/blobs/{digest}", content),
            ("POST", "/api/v1/packages", meta.model_dump_json(by_alias=True).encode()),
        ):
            for _ in range(20):  # a 429 (the default limits) or 503 (copies) is retried
                resp = pool.request(method, f"http://{first}:7070{path}", body=body, timeout=30.0)
                if resp.status not in {429, 503}:
                    break
                time.sleep(1.0)
            assert resp.status in {200, 201}, resp.data[:300]
            time.sleep(0.25)
        published.append((str(json.loads(resp.data)["id"]), digest))

    def known() -> bool:
        return all(
            pool.request("GET", f"http://{ip}:7070/api/v1/packages/{pid}", timeout=5.0).status
            == 200
            for pid, _ in published
            for ip in ips.values()
        )

    took = cluster.wait("the packages on every node", lambda: _quietly(known), deadline=300,
                        interval=1.0)  # fmt: skip
    print(f"{count} packages to take down known on every node {took:.0f} s after publishing")
    return published


class TakedownWriter:
    """Grows one BanList by one `digest` entry per change (a takedown), through the API."""

    def __init__(self, kube: k8s.BlockingKube, namespace: str) -> None:
        self.kube, self.namespace, self.digests = kube, namespace, list[str]()
        kube.create(BANLISTS, self._body())

    def _body(self) -> dict[str, Any]:
        body = _banlist(self.namespace, "bench-takedowns", [])
        body["spec"]["entries"] = [{"digest": d, "reason": "bench"} for d in self.digests]
        return body

    def add(self, digest: str) -> None:
        self.digests.append(digest)
        self.kube.patch(BANLISTS, self.namespace, "bench-takedowns", {"spec": self._body()["spec"]})


def _takedowns(kube: k8s.BlockingKube, namespace: str, ips: dict[str, str]) -> Samples:
    """A digest block per trial, timed until every node answers 451 for its package."""
    targets = _published_everywhere(ips, TRIALS)
    writer = TakedownWriter(kube, namespace)
    samples = Samples()
    for package_id, digest in targets:
        started = time.monotonic()
        writer.add(digest)

        async def blocked(session: aiohttp.ClientSession, ip: str, pid: str = package_id) -> bool:
            return await _taken_down(session, ip, pid)

        samples.add(asyncio.run(_enforcement(ips, blocked, started, deadline=30)))
        time.sleep(0.3)
    print(
        f"{'takedown (digest, push)':<28} every node: p50 {_pct(samples.fleet, 50) * 1000:7.0f} ms"
        f"  p99 {_pct(samples.fleet, 99) * 1000:7.0f} ms"
        f"   single node: p50 {_pct(samples.node, 50) * 1000:6.0f} ms"
        f"  p99 {_pct(samples.node, 99) * 1000:6.0f} ms"
    )
    return samples


def _large(
    kube: k8s.BlockingKube, namespace: str, ips: dict[str, str], operator: cluster.Operator
) -> None:
    target = Identity.generate()
    started = time.monotonic()
    for body in _big_lists(namespace, target):
        _retrying(lambda body=body: kube.create(BANLISTS, body))  # type: ignore[misc]
    per_node = asyncio.run(_enforcement(ips, target, started, deadline=300))
    print(
        f"10,000 bans in 5 BanLists: every node of {len(ips)} enforcing after "
        f"{max(per_node.values()):.2f} s; operator RSS {operator.rss_mib():.0f} MiB"
    )


def main() -> int:
    cluster.require_kubeconfig()
    kube = k8s.BlockingKube.from_environment()
    namespace = f"bench-policy-{uuid.uuid4().hex[:5]}"
    cluster.apply_crds()
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    log_dir = Path(os.environ.get("BENCH_LOG_DIR", cluster.ROOT / ".cluster"))
    operator = cluster.Operator(namespace, log_dir / f"bench-policy-operator-{namespace}.log")
    try:
        kube.create(RATELIMITPOLICIES, _no_tarpit(namespace))
        operator.start(_policy(enabled=True))
        ips = _make_fleet(kube, namespace)
        writer = BanListWriter(kube, namespace)
        time.sleep(2)
        push = _trials("push (operator)", ips, writer.add, deadline=30)
        takedown = _takedowns(kube, namespace, ips)
        ban_p99, takedown_p99 = _pct(push.fleet, 99), _pct(takedown.fleet, 99)
        print(
            f"takedown p99 every node of {len(ips)}: {takedown_p99 * 1000:.0f} ms "
            f"(bound: the ban push p99 of this run, {ban_p99 * 1000:.0f} ms; "
            f"ratio {takedown_p99 / ban_p99:.2f}x)"
        )
        operator_rss = operator.rss_mib()
        operator.stop()
        operator.start(_policy(enabled=False))
        cm = _trials("ConfigMap, local kubelet", ips, ConfigMapOnly(kube, namespace, writer).add,
                     deadline=120)  # fmt: skip
        informers = Informers(namespace, ips, _token(kube, namespace), base=10_000)
        informers.start()
        try:
            watched = _trials("direct watch (per node)", ips, writer.add, deadline=30)
        finally:
            informers.stop()
        print(f"operator RSS with {len(ips)} nodes: {operator_rss:.0f} MiB")
        verdict = _report(push, cm, watched)
        operator.stop()
        operator.start(
            _policy(enabled=True)
        )  # versions above the informers': it reads nodes' 409s and overtakes
        _large(kube, namespace, ips, operator)
        return verdict
    finally:
        operator.stop()  # first: a running operator would put its finalizers back
        cluster.release_namespace(kube, namespace)
        kube.close()


if __name__ == "__main__":
    raise SystemExit(main())
