"""The operator at fleet scale: 100, 300 and 1,000 MarketplaceNodes on the node farm.

Needs a cluster whose kubelet simulates marketplace-node containers
(`SIMULATE_NODES=1 hack/cluster.sh up`, as `make bench-scale` does; otherwise
skipped): each node's pod is real — scheduled, probed, readiness-gated — but
is served by the kubelet's node farm (`hack/local_kubelet/farm.py`: the
node's own admin API and policy door, no catalogue), so the operator does for
each exactly the work it does for a real node.

Per fleet size N, one operator process watching a fresh namespace:

- apply -> all Ready: a MarketplaceFleet (maxUnavailable 10 %) and N
  MarketplaceNodes created, until every node's Ready condition is True for
  its generation;
- policy p99: a BanList for the fleet, until each virtual node put it in force
  (the farm records the time: farm-events.jsonl), p50/p99/max over nodes;
- reconcile p99 after a spec change: every node's `drainTimeoutSeconds`
  patched, until its `status.observedGeneration` reaches the new generation;
- full rollout: from that change until the fleet reports Complete with every
  pod replaced (maxUnavailable "10%": 100 nodes at once at 1,000);
- operator RSS at the end and CPU-seconds per phase (/proc), and the API
  server's request rate per phase (`apiserver_request_total`, every client:
  the operator is most of it in an otherwise idle cluster), with its five busiest
  kinds of request.

Each size starts once the last one's namespace is gone, on a control plane and kubelets
restarted for it (state kept): no size is measured while the cluster still tears the one
before down, nor on the heaps and caches it left (the 1,000-node phases after a 300-node
run were the slow ones, 6.6 ms per API request against 5.3-5.7).

Goals at 1,000 (issue 15): RSS < 300 MiB, policy p99 < 2 s, growth no worse
than linear. `BENCH_SCALE_SIZES` (default "100,100,100,300,1000") picks the sizes; a
size given more than once is measured that often and judged by each cost's median: a
100-node run's phases last seconds, and one busy moment of the machine moved its
operator CPU-s by a third (12.7-16.1 for the same code).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client
from marketplace_operator import k8s
from marketplace_operator.model.common import API_VERSION, GROUP, VERSION
from marketplace_operator.model.fleet import resolve_max_unavailable

from bench import cluster, report
from bench.gossip_sim import percentile

if TYPE_CHECKING:
    from matplotlib.axes import Axes

RSS_GOAL_MIB = 300.0
DEFAULT_SIZES = "100,100,100,300,1000"  # the baseline thrice: its median
POLICY_P99_GOAL_S = 2.0
FLEET = "scale"
REQUESTS_RE = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$", re.MULTILINE)
LABEL_RE = re.compile(r'(\w+)="([^"]*)"')
LABEL_RE_VALUES = re.compile(r'\w+="([^"]*)"')
BUSIEST_SHOWN = 5
PROGRESS_SECONDS = 60.0
TEARDOWN_SECONDS = 900.0
PHASES = 3  # apply -> all Ready, policy to every node, spec change -> rollout complete
ROLLOUT = "spec change -> rollout complete"
PER_NODE_WORK = (
    "passes", "status", "members", "writes urgent", "events pods", "events marketplacenodes",
)  # fmt: skip
PVS = k8s.Resource("persistentvolumes", namespaced=False)
EVENTS = k8s.Resource("events")
PHASE_CHANGED = "PhaseChanged"  # the operator's Event of a node's phase change
CLUSTER_PARTS = {
    "kube-apiserver": "API server",
    "etcd": "etcd",
    "kubelet": "kubelets + farm",
    "kube-controller-manager": "controllers",
    "kube-scheduler": "scheduler",
}  # pid file name's start -> what a phase's cluster CPU line calls it


@dataclass
class Phase:
    seconds: float
    cpu: float  # operator CPU-seconds
    requests: float  # API server requests (all clients)
    # requests by "VERB resource[/subresource]" (all clients): where the rate goes
    by_kind: dict[str, float] = field(default_factory=dict)
    # CPU-seconds of the cluster's own processes by component (`_cluster_cpu`)
    cluster: dict[str, float] = field(default_factory=dict)
    # the operator's own count of its work (`_work`): node passes, admin calls by operation
    work: dict[str, float] = field(default_factory=dict)
    # the namespace's Events posted in the phase, by "component reason" (`_event_reasons`)
    events: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else math.nan


@dataclass
class Result:
    n: int
    phases: dict[str, Phase] = field(default_factory=dict)
    policy: list[float] = field(default_factory=list)
    reconcile: list[float] = field(default_factory=list)
    reconcile_in_order: list[float] = field(default_factory=list)  # by the patches' order
    patching: float = math.nan  # seconds from the first spec patch to the last one's answer
    rss: float = math.nan  # at the end
    peak: float = math.nan  # the most seen (sampled every PROGRESS_SECONDS and at the end)
    unfinished: str = ""
    loads: list[float] = field(default_factory=list)  # 1-min load averages seen meanwhile

    @property
    def load(self) -> str:
        """The machine's 1-minute load average during this size's run, as "min-max"."""
        if not self.loads:
            return "-"
        return f"{min(self.loads):.0f}-{max(self.loads):.0f}"


class Progress:
    """Every `PROGRESS_SECONDS` inside a wait: one line of where the fleet is (pods, claims,
    nodes, the rollout's own account), and a load-average sample. A slow phase then says
    which stage it is slow in, and a stalled rollout why (its `blockedBy`)."""

    def __init__(self, kube: k8s.BlockingKube, namespace: str, result: Result) -> None:
        self.kube, self.namespace, self.result = kube, namespace, result
        self.started = time.monotonic()
        self.last = self.started
        self.rss: Callable[[], float] | None = None  # the operator's, once it runs
        self.sample()

    def sample(self) -> None:
        with contextlib.suppress(OSError):
            self.result.loads.append(os.getloadavg()[0])
            if self.rss is not None:
                rss = self.rss()
                self.result.peak = (
                    rss if math.isnan(self.result.peak) else max(self.result.peak, rss)
                )

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_SECONDS:
            return
        self.last = now
        self.sample()
        try:
            line = self.line()
        except Exception as exc:  # a progress line must never end the run
            line = f"(progress unavailable: {exc})"
        print(f"    [{now - self.started:5.0f} s] {line}", flush=True)

    def line(self) -> str:
        pods = self.kube.list(k8s.PODS, self.namespace)
        claims = self.kube.list(k8s.PVCS, self.namespace)
        mnodes = _mnodes(self.kube, self.namespace)
        ready_pods = sum(1 for p in pods if _pod_ready(p))
        bindings = sum(1 for c in claims if (c.get("status") or {}).get("phase") == "Bound")
        ours = {c["metadata"]["uid"] for c in claims}
        volumes = sum(  # made by the provisioner for our claims
            1
            for v in self.kube.list(PVS, "")
            if ((v.get("spec") or {}).get("claimRef") or {}).get("uid") in ours
        )
        fleet = (self.kube.get(k8s.FLEETS, self.namespace, FLEET) or {}).get("status") or {}
        return (
            f"pods {len(pods)} ({ready_pods} Ready), claims {len(claims)} ({volumes} with a "
            f"volume, {bindings} with the binding complete), "
            f"nodes {sum(_ready(o) for o in mnodes)}/{len(mnodes)} Ready; "
            f"load {os.getloadavg()[0]:.0f}; fleet {fleet.get('phase')} "
            f"updated {fleet.get('updated')} unavailable {fleet.get('unavailable')} "
            f"steps {len(fleet.get('steps') or [])} failures {len(fleet.get('failures') or [])}"
            f"; blocked by: {str(fleet.get('blockedBy') or '-')[:160]}"
        )


def _api_requests() -> dict[str, float]:
    """The API server's requests so far by "VERB resource[/subresource]"."""
    out = subprocess.run(
        [str(cluster.ROOT / ".cluster/bin/kubectl"), "get", "--raw", "/metrics"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    counts: dict[str, float] = {}
    for labels, value in REQUESTS_RE.findall(out):
        got = dict(LABEL_RE.findall(labels))
        kind = "/".join(p for p in (got.get("resource"), got.get("subresource")) if p)
        key = f"{got.get('verb', '?')} {kind or got.get('path', '-')}"
        counts[key] = counts.get(key, 0.0) + float(value)
    return counts


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rollout_deadline(n: int) -> float:
    """Seconds the rollout may take before the run says so and moves on."""
    return float(os.environ.get("BENCH_SCALE_ROLLOUT_SECONDS", 300 + 10 * n))


MAX_UNAVAILABLE = "10%"
"""As issue 15 asks: the operator resolves it against the fleet's members (rounded down)."""


def _cluster_cpu() -> dict[str, float]:
    """CPU-seconds so far of the cluster's own processes by component, from
    `hack/cluster.sh`'s pid files: what else a phase's time went to on this machine (the
    kubelets' include the node farm they serve)."""
    out: dict[str, float] = {}
    for f in sorted((_cluster_dir() / "pids").glob("*.pid")):
        name = next((v for k, v in CLUSTER_PARTS.items() if f.stem.startswith(k)), f.stem)
        with contextlib.suppress(OSError, ValueError, IndexError):
            out[name] = out.get(name, 0.0) + _cpu_seconds(int(f.read_text().split()[0]))
    return out


WORK_RE = re.compile(
    r"^marketplace_operator_"
    r"(reconciliations|admin_api_calls|status_writes|watch_events|node_passes|gc_seconds)"
    r"_total\{([^}]*)\}$"
)

TURN_WAIT_RE = re.compile(
    r'^marketplace_operator_pass_turn_wait_seconds_(count|bucket)\{(?:le="([^"]+)",)?urgent="(\w+)"'
)
SLOW_TURN_S = "1.0"  # a turn waited for longer than this is counted as slow


def _work(samples: Mapping[str, float]) -> dict[str, float]:
    """From the operator's metrics: its node passes (every outcome; and by what began them
    and how the node's status was had: "pass event reused", ...), its admin API calls by
    operation ("status", "members", ...), its MarketplaceNode status writes by kind
    ("writes urgent", ...), the watch events it handled by kind ("events pods", ...) and its
    garbage collector's CPU-seconds by generation ("gc 2"): what its API requests do not
    show or do not tell apart."""
    work: dict[str, float] = {}
    for key, value in samples.items():
        m = WORK_RE.match(key)
        if m is not None:
            label = " ".join(LABEL_RE_VALUES.findall(m[2]))
            kinds = {
                "reconciliations": "passes",
                "status_writes": f"writes {label}",
                "watch_events": f"events {label}",
                "node_passes": f"pass {label}",
                "gc_seconds": f"gc gen{label}",
            }
            name = kinds.get(m[1], label)
            work[name] = work.get(name, 0.0) + value
        turn = TURN_WAIT_RE.match(key)
        if turn is not None and turn[2] in (None, SLOW_TURN_S):
            name = f"waited {'urgent' if turn[3] == 'true' else 'routine'} over 1 s"
            # within 1 s, counted negative: added to the count, what waited longer
            sign = -1.0 if turn[1] == "bucket" else 1.0
            work[name] = work.get(name, 0.0) + sign * value
    return work


def _event_reasons(kube: k8s.BlockingKube, namespace: str) -> dict[str, float]:
    """The namespace's Events so far by "component reason", each counted as often as it
    happened (a kubelet's repeats are one Event with a count): who posts how many. A phase
    change by its transition ("kopf PhaseChanged Ready -> Replacing"): which phases a
    replaced node passes through, and which flaps grow with the fleet."""
    tally: dict[str, float] = {}
    for ev in kube.list(EVENTS, namespace):
        who = (ev.get("source") or {}).get("component") or ev.get("reportingComponent") or "?"
        reason = ev.get("reason", "?")
        if reason == PHASE_CHANGED:
            reason += " " + str(ev.get("message") or "").partition(":")[0]
        key = f"{who} {reason}"
        tally[key] = tally.get(key, 0.0) + float(ev.get("count") or 1)
    return tally


def _phase(
    operator: cluster.Operator, kube: k8s.BlockingKube, namespace: str, run: Callable[[], None]
) -> Phase:
    assert operator._proc is not None
    pid = operator._proc.pid
    cpu, requests, started = _cpu_seconds(pid), _api_requests(), time.monotonic()
    parts, work = _cluster_cpu(), _work(operator.metrics())
    events = _event_reasons(kube, namespace)
    run()
    after = _api_requests()
    by_kind = {k: v - requests.get(k, 0.0) for k, v in after.items()}
    return Phase(
        seconds=time.monotonic() - started,
        cpu=_cpu_seconds(pid) - cpu,
        requests=sum(by_kind.values()),
        by_kind={k: v for k, v in by_kind.items() if v > 0},
        cluster={k: v - parts.get(k, 0.0) for k, v in _cluster_cpu().items()},
        work={k: v - work.get(k, 0.0) for k, v in _work(operator.metrics()).items()},
        events={
            k: v - events.get(k, 0.0)
            for k, v in _event_reasons(kube, namespace).items()
            if v > events.get(k, 0.0)
        },
    )


class FirstSeen:
    """When each MarketplaceNode's status first said it had observed each generation (as
    its watch event arrived): a node's reconcile latency is that minus its own patch's
    start. Looked for only after the whole fleet was patched, the first nodes' latencies
    were the patching's length (one by one, 1,000 patches took most of the "101 s p99")."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._first: dict[str, dict[int, float]] = {}

    def note(self, obj: Mapping[str, Any]) -> None:
        seen = (obj.get("status") or {}).get("observedGeneration")
        if isinstance(seen, int):
            by_generation = self._first.setdefault(obj["metadata"]["name"], {})
            by_generation.setdefault(seen, self._clock())

    def at(self, name: str, generation: int) -> float | None:
        """When `name` was first seen to have observed `generation` or a later one."""
        times = [t for g, t in self._first.get(name, {}).items() if g >= generation]
        return min(times) if times else None


def _mnodes(kube: k8s.BlockingKube, namespace: str) -> list[dict[str, Any]]:
    return kube.list(k8s.MNODES, namespace)


def _watch(namespace: str) -> cluster.Watched:
    """A watch on the MarketplaceNodes the phases wait for. Measuring must not load the
    system measured: a LIST of 1,000 nodes (4 MB of JSON for the API server to write and
    this process to parse) every half second while the fleet rolls grew with the fleet
    times the rollout's length. A watch sends each change once."""
    watched = cluster.Watched()
    custom = client.CustomObjectsApi()
    watched.follow("mnodes", custom.list_namespaced_custom_object, GROUP, VERSION, namespace,
                   k8s.MNODES.plural)  # fmt: skip
    return watched


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return ready and status.get("observedGeneration") == obj["metadata"]["generation"]


def _cluster_dir() -> Path:
    return Path(os.environ.get("CLUSTER_DIR", cluster.ROOT / ".cluster"))


def _farm_events() -> Path:
    return _cluster_dir() / "kubelet" / "farm-events.jsonl"


def _policy_times(ips: set[str], since: float) -> dict[str, float]:
    """When each of `ips` first applied a policy after `since`."""
    seen: dict[str, float] = {}
    path = _farm_events()
    if not path.exists():
        return seen
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event["ip"] in ips and event["at"] >= since and event["ip"] not in seen:
            seen[event["ip"]] = event["at"]
    return seen


def measure(kube: k8s.BlockingKube, n: int, log_dir: Path) -> Result:
    namespace = f"bench-scale-{n}-{uuid.uuid4().hex[:4]}"
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    operator = cluster.Operator(namespace, log_dir / f"bench-scale-{namespace}.log")
    result = Result(n)
    progress = Progress(kube, namespace, result)
    watched = _watch(namespace)
    try:
        operator.start()
        progress.rss = operator.rss_mib
        names = [f"{FLEET}-{i}" for i in range(n)]

        def apply() -> None:
            kube.create(
                k8s.FLEETS,
                {
                    "apiVersion": API_VERSION,
                    "kind": "MarketplaceFleet",
                    "metadata": {"name": FLEET, "namespace": namespace},
                    "spec": {"maxUnavailable": MAX_UNAVAILABLE, "stepTimeoutSeconds": 300},
                },
            )
            for name in names:
                kube.create(
                    k8s.MNODES,
                    {
                        "apiVersion": API_VERSION,
                        "kind": "MarketplaceNode",
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": {"fleet": FLEET, "drainTimeoutSeconds": 2},
                    },
                )
            progress.last = time.monotonic()

            def all_ready() -> bool:
                progress.tick()
                return sum(_ready(o) for o in watched.snapshot("mnodes")) == n

            cluster.wait(f"{n} nodes Ready", all_ready, deadline=120 + 3 * n, interval=2.0)

        result.phases["apply -> all Ready"] = _phase(operator, kube, namespace, apply)
        _print_phase("apply -> all Ready", result.phases["apply -> all Ready"])
        ips = {
            p["status"]["podIP"]
            for p in kube.list(k8s.PODS, namespace)
            if (p.get("status") or {}).get("podIP") and p["metadata"]["name"] in set(names)
        }

        def policy() -> None:
            since = time.time()
            kube.create(
                k8s.Resource("banlists", "marketplace.p2p.dev", "v1alpha1"),
                {
                    "apiVersion": API_VERSION,
                    "kind": "BanList",
                    "metadata": {"name": "scale-ban", "namespace": namespace},
                    "spec": {
                        "fleet": FLEET,
                        "entries": [{"cidr": "203.0.113.0/24", "reason": "bench"}],
                    },
                },
            )
            cluster.wait(
                "the policy on every node",
                lambda: len(_policy_times(ips, since)) >= len(ips),
                deadline=60 + n / 5,
                interval=0.5,
            )
            result.policy = sorted(t - since for t in _policy_times(ips, since).values())

        result.phases["policy to every node"] = _phase(operator, kube, namespace, policy)
        _print_phase("policy to every node", result.phases["policy to every node"])

        def spec_change() -> None:
            generations: dict[str, int] = {}
            changed_at: dict[str, float] = {}
            seen = FirstSeen()
            watched.listen("mnodes", seen.note)
            for name in names:
                changed_at[name] = time.monotonic()  # the user's apply begins
                obj = kube.patch(
                    k8s.MNODES, namespace, name, {"spec": {"drainTimeoutSeconds": 3}}, answer=True
                )
                generations[name] = int((obj or {}).get("metadata", {}).get("generation") or 0)

            def observed() -> bool:
                progress.tick()
                return all(seen.at(name, generations[name]) is not None for name in names)

            result.patching = time.monotonic() - changed_at[names[0]]
            cluster.wait("every node reconciled", observed, deadline=60 + n, interval=0.5)
            result.reconcile_in_order = [
                (seen.at(name, generations[name]) or math.nan) - changed_at[name] for name in names
            ]
            result.reconcile = sorted(result.reconcile_in_order)

            def rolled() -> bool:
                progress.tick()
                status = (kube.get(k8s.FLEETS, namespace, FLEET) or {}).get("status") or {}
                return bool(
                    status.get("phase") == "Complete"
                    and status.get("updated") == n
                    and not status.get("steps")
                    and sum(_ready(o) for o in watched.snapshot("mnodes")) == n
                )

            try:
                cluster.wait("the rollout", rolled, deadline=rollout_deadline(n), interval=2.0)
            except TimeoutError:
                status = (kube.get(k8s.FLEETS, namespace, FLEET) or {}).get("status") or {}
                result.unfinished = f"rollout NOT complete: {status.get('updated')}/{n} updated"
                print(f"  {result.unfinished} after {rollout_deadline(n):.0f} s", flush=True)
                print(f"    the fleet's account: {progress.line()}", flush=True)

        rollout = _phase(operator, kube, namespace, spec_change)
        result.phases[ROLLOUT] = rollout
        _print_phase("spec change -> rollout", rollout)
    except TimeoutError as exc:  # a phase that never ended: say so, keep what was measured
        result.unfinished = f"NOT measured further: {exc}"
        print(f"  {result.unfinished}", flush=True)
        with contextlib.suppress(Exception):
            print(f"    the fleet's account: {progress.line()}", flush=True)
    finally:
        watched.close()
        with contextlib.suppress(Exception):
            result.rss = operator.rss_mib()
            progress.sample()
        operator.stop()
        cluster.release_namespace(kube, namespace)
        # The next size starts on a quiet cluster: tearing 1,000 pods down meanwhile took
        # a share of the machine from the measured size (and more from the bigger one).
        gone = cluster.wait_namespace_gone(kube, namespace, timeout=TEARDOWN_SECONDS)
        print(
            f"    {namespace} deleted in {gone:.0f} s"
            if gone is not None
            else f"    {namespace} not gone after {TEARDOWN_SECONDS:.0f} s; going on",
            flush=True,
        )
    return result


def _print_phase(name: str, ph: Phase) -> None:
    print(
        f"  {name:34} {ph.seconds:7.1f} s  operator CPU {ph.cpu:6.1f} s  API {ph.rate:6.1f} req/s",
        flush=True,
    )
    print(f"  {'':34} cluster CPU-s: {_parts(ph)}", flush=True)
    print(f"  {'':34} busiest requests: {_busiest(ph)}", flush=True)
    print(f"  {'':34} operator's work: {_work_line(ph)}", flush=True)
    top = sorted(ph.events.items(), key=lambda kv: -kv[1])[: BUSIEST_SHOWN + 7]
    print(f"  {'':34} Events: {', '.join(f'{k} {v:,.0f}' for k, v in top)}", flush=True)


def _work_line(ph: Phase) -> str:
    """Node passes, admin calls by operation and status writes by kind, the most first."""
    line = f"node passes {ph.work.get('passes', 0.0):,.0f}"
    grouped = {
        "pass ": "passes by trigger and poll",
        "writes ": "status writes",
        "events ": "watch events",
        "gc ": "GC CPU-s by generation",
        "waited ": "turns waited for",
    }
    calls = sorted(
        (-v, k)
        for k, v in ph.work.items()
        if k != "passes" and not k.startswith(tuple(grouped)) and v
    )
    if calls:
        line += "; admin calls: " + ", ".join(f"{k} {-v:,.0f}" for v, k in calls)
    for prefix, title in grouped.items():
        shown = sorted(
            (-v, k.removeprefix(prefix)) for k, v in ph.work.items() if k.startswith(prefix) and v
        )
        if shown:
            line += f"; {title}: " + ", ".join(f"{k} {-v:,.0f}" for v, k in shown)
    return line


def _busiest(ph: Phase) -> str:
    top = sorted(ph.by_kind.items(), key=lambda kv: -kv[1])[:BUSIEST_SHOWN]
    return ", ".join(f"{k} {v:,.0f}" for k, v in top)


def _parts(ph: Phase) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in sorted(ph.cluster.items(), key=lambda kv: -kv[1]))


def _s(v: float) -> str:
    return f"{v:.2f} s" if math.isfinite(v) else "-"


def main() -> int:
    if os.environ.get("SIMULATE_NODES") != "1" or not os.environ.get("KUBECONFIG"):
        needs = "needs the node farm: `make bench-scale` (SIMULATE_NODES=1)"
        raise report.NotRun(needs, fails=False)
    sizes = [int(s) for s in os.environ.get("BENCH_SCALE_SIZES", DEFAULT_SIZES).split(",")]
    log_dir = Path(os.environ.get("BENCH_LOG_DIR", tempfile.gettempdir()))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"== the operator at scale (node farm), sizes {sizes}; machine: {report.machine()} ==")
    cluster.apply_crds()
    results: list[Result] = []
    for i, n in enumerate(sizes):
        if i:
            print(f"  cluster restarted in {cluster.restart():.0f} s", flush=True)
        kube = k8s.BlockingKube.from_environment()
        try:
            budget = resolve_max_unavailable(MAX_UNAVAILABLE, n)
            print(f"n={n:,} (maxUnavailable {MAX_UNAVAILABLE} = {budget}):", flush=True)
            r = measure(kube, n, log_dir)
            results.append(r)
            print(
                f"n={n:,}: operator RSS {r.rss:.0f} MiB (peak {r.peak:.0f}), load {r.load} "
                f"{r.unfinished}"
            )
            print(
                f"  policy to each node: p50 {_s(percentile(r.policy, 50))} "
                f"p99 {_s(percentile(r.policy, 99))} "
                f"max {_s(r.policy[-1] if r.policy else math.nan)}"
            )
            print(
                f"  reconcile after the spec change: p50 {_s(percentile(r.reconcile, 50))} "
                f"p99 {_s(percentile(r.reconcile, 99))}; patched in {_s(r.patching)}; "
                f"slowest by patch order (tenths): {by_tenths(r.reconcile_in_order)}",
                flush=True,
            )
        finally:
            kube.close()
    runs = by_size(results)
    big = typical(runs[max(runs)])
    rss_ok = big.peak < RSS_GOAL_MIB
    policy_ok = percentile(big.policy, 99) < POLICY_P99_GOAL_S
    print(
        f"at {big.n:,} nodes: operator RSS {big.rss:.0f} MiB, peak {big.peak:.0f} MiB "
        f"[goal < {RSS_GOAL_MIB:.0f} MiB: {'ok' if rss_ok else 'MISSED'}]; policy p99 "
        f"{_s(percentile(big.policy, 99))} "
        f"[goal < {POLICY_P99_GOAL_S:.0f} s: {'ok' if policy_ok else 'MISSED'}]"
    )
    smallest = min(runs)
    linear = all([_growth(runs[smallest], runs[n]) for n in runs if n != smallest])
    _write_report(results, runs)
    ok = rss_ok and policy_ok and linear
    return 0 if ok and not any(r.unfinished for r in results) else 1


def by_tenths(latencies: list[float]) -> str:
    """The slowest latency in each tenth of `latencies` (in the order the changes were
    made): whether a tail is the queue the patches built (rising to the last tenth) or a
    few nodes held up anywhere."""
    if not latencies:
        return "-"
    n = len(latencies)
    tenths = [latencies[i * n // 10 : (i + 1) * n // 10] for i in range(10)]
    return " ".join(f"{max(t):.1f}" for t in tenths if t)


def _costs(r: Result) -> dict[str, float]:
    """What grows with the fleet: the operator's CPU over all phases, its peak RSS, the
    time to all Ready and the reconcile latency p99 after the spec change (NaN where a
    phase did not finish)."""
    ready = r.phases.get("apply -> all Ready")
    finished = len(r.phases) == PHASES and not r.unfinished
    return {
        "apply -> all Ready": ready.seconds if ready is not None else math.nan,
        "reconcile p99": percentile(r.reconcile, 99) if r.reconcile else math.nan,
        "operator CPU-s": sum(ph.cpu for ph in r.phases.values()) if finished else math.nan,
        "operator RSS (peak)": r.peak,
    }


def by_size(results: list[Result]) -> dict[int, list[Result]]:
    """The runs of each fleet size, smallest size first."""
    runs: dict[int, list[Result]] = {}
    for r in sorted(results, key=lambda r: r.n):
        runs.setdefault(r.n, []).append(r)
    return runs


def typical(runs: list[Result]) -> Result:
    """The run of median operator CPU-s among `runs` of one size (the lower of two)."""
    return sorted(runs, key=lambda r: _costs(r)["operator CPU-s"])[(len(runs) - 1) // 2]


def median_costs(runs: list[Result]) -> dict[str, float]:
    """Each cost's median over `runs` of one size (NaN: not measured in any of them)."""
    costs = [_costs(r) for r in runs]
    medians = {}
    for name in costs[0]:
        measured = [c[name] for c in costs if not math.isnan(c[name])]
        medians[name] = statistics.median(measured) if measured else math.nan
    return medians


def _per_node(small: Result, big: Result) -> str:
    """The rollout's work per node at both sizes, and its growth: linear total work is the
    same per node, so whatever grows here is what makes the total grow faster."""
    a, b = small.phases.get(ROLLOUT), big.phases.get(ROLLOUT)
    if a is None or b is None:
        return "per node in the rollout: not measured at both sizes"
    rows = [("operator CPU ms", a.cpu * 1e3, b.cpu * 1e3)]
    rows += [(k, a.work.get(k, math.nan), b.work.get(k, math.nan)) for k in PER_NODE_WORK]
    parts = [
        f"{name} {x / small.n:.1f} -> {y / big.n:.1f} (x{(y / big.n) / (x / small.n):.2f})"
        for name, x, y in rows
        if x > 0 and y > 0  # False for NaN too: not counted by that operator
    ]
    return f"per node in the rollout, {small.n:,} -> {big.n:,}: " + ", ".join(parts)


def _growth(smalls: list[Result], bigs: list[Result]) -> bool:
    """Print how each cost's median grew from the runs `smalls` to the runs `bigs` (each
    of one size) against the fleet's growth; True when none grew faster (the issue's
    "growth no worse than linear"). A run that did not finish makes it False."""
    small, big = smalls[0].n, bigs[0].n
    times = big / small
    base = median_costs(smalls)
    grew = {
        name: cost / base[name] for name, cost in median_costs(bigs).items()
    }  # NaN: not measured at one of the sizes
    finished = not any(r.unfinished for r in [*smalls, *bigs])
    ok = finished and all(g <= times for g in grew.values())
    parts = ", ".join(f"{name} x{g:.1f}" for name, g in grew.items())
    runs = f" (medians of {len(smalls)} and {len(bigs)} runs)" if len(smalls + bigs) > 2 else ""
    print(
        f"growth {small:,} -> {big:,} nodes (x{times:.0f}){runs}: {parts} "
        f"[goal: each at most x{times:.0f}: {'ok' if ok else 'MISSED'}]"
    )
    print(f"  {_per_node(typical(smalls), typical(bigs))}")
    return ok


def _write_report(results: list[Result], runs: dict[int, list[Result]]) -> None:
    """The report's tables (every run, in the order measured) and its plot (`runs`: the
    runs by size, `by_size`)."""
    rows = []
    for r in results:
        for name, ph in r.phases.items():
            rows.append(
                [
                    f"{r.n:,}",
                    name,
                    f"{ph.seconds:.1f} s",
                    f"{ph.cpu:.1f}",
                    f"{ph.rate:.0f}",
                    _parts(ph) or "-",
                ]
            )
    report.add(
        report.table(
            ["nodes", "phase", "took", "operator CPU-s", "API req/s", "cluster CPU-s"], rows
        )
    )
    report.add(
        report.table(
            [
                "nodes",
                "load (1 min)",
                "operator RSS (peak)",
                "policy p50",
                "policy p99",
                "reconcile p99",
            ],
            [
                [
                    f"{r.n:,}",
                    r.load,
                    f"{r.rss:.0f} MiB ({r.peak:.0f})",
                    _s(percentile(r.policy, 50)),
                    _s(percentile(r.policy, 99)),
                    _s(percentile(r.reconcile, 99)),
                ]
                for r in results
            ],
        )
    )

    ns = list(runs)
    medians = [median_costs(runs[n]) for n in ns]

    def draw(ax: Axes) -> None:
        for name in medians[0]:
            (line,) = ax.plot(ns, [m[name] for m in medians], marker="o", label=name)
            # linear growth from the smallest size: the goal's bound
            bound = [medians[0][name] * n / ns[0] for n in ns]
            ax.plot(ns, bound, linestyle=":", color=line.get_color())
        ax.set_xlabel("MarketplaceNodes (dotted: linear growth from the smallest size)")
        ax.legend()

    report.plot("operator-cost", "Operator cost against fleet size (node farm)", draw)


if __name__ == "__main__":
    sys.exit(main())
