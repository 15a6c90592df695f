"""Client load and fleet watching for the rollout tests and the benchmark.

- `FleetWatch` watches a fleet's pods (list, then watch from that resourceVersion) and
  records, after every event, which members were unavailable (no pod, terminating, or
  not Ready — Ready includes the `joined` readiness gate), so a test can check the most
  that were ever out at once.
- `ready_endpoints` is what a load balancer would send to: the ready endpoints of the
  fleet's EndpointSlices. The local cluster gives pods loopback IPs, which EndpointSlice
  validation refuses ("may not be in the loopback range"), so there the slices stay
  empty; `Endpoints` then applies the EndpointSlice controller's own rule to the watched
  pods (Ready and not terminating) — the same data, without the controller's hop.
- `LoadGenerator` runs worker threads that send searches and fetches (package view and
  content) to a random ready endpoint at a bounded rate, one connection per request (no
  stale keep-alive connection can be blamed on the server), and records every failure:
  a connection error, a timeout, any status but 200, or no ready endpoint at all.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config, watch

APP_SELECTOR = "app.kubernetes.io/name=marketplace-node"
FLEET_LABEL = "marketplace.p2p.dev/fleet"
T = TypeVar("T")
JOINED_GATE = "marketplace.p2p.dev/joined"


def api_client(kubeconfig: str) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


def _ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def unready_why(pod: Any, *, gone: bool = False) -> str:
    """Why a pod is not Ready, in a few words ("" when it is): gone, terminating, its
    container not ready (the readiness probe: the kubelet's word), or the `joined` gate
    off with the gate's reason (the operator's word: Leaving, NotJoined)."""
    if gone:
        return "gone"
    if pod.metadata.deletion_timestamp is not None:
        return "terminating"
    conditions = {c.type: c for c in pod.status.conditions or []}
    if getattr(conditions.get("Ready"), "status", None) == "True":
        return ""
    if getattr(conditions.get("ContainersReady"), "status", None) != "True":
        return "container not ready"
    gate = conditions.get(JOINED_GATE)
    if getattr(gate, "status", None) != "True":
        return f"gate {getattr(gate, 'reason', None) or 'unset'}"
    return "not ready"


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    unavailable: tuple[str, ...]


@dataclass(frozen=True)
class PodEvent:
    at: float  # time.monotonic()
    name: str
    uid: str
    ready: bool
    deleting: bool
    gone: bool
    why: str = ""  # `unready_why`: what made it unavailable


@dataclass
class PodState:
    uid: str
    ip: str | None
    port: int
    ready: bool


class FleetWatch:
    """The pods of one fleet, kept current by a watch, with a history of unavailability."""

    def __init__(self, kubeconfig: str, namespace: str, fleet: str, members: Iterable[str]) -> None:
        self.namespace = namespace
        self.selector = f"{APP_SELECTOR},{FLEET_LABEL}={fleet}"
        self.members = frozenset(members)
        self.pods: dict[str, PodState] = {}
        self.samples: list[Sample] = []
        self.uids_seen: dict[str, list[str]] = {}  # pod name -> every uid, in order
        self.events: list[PodEvent] = []
        self._api = client.CoreV1Api(api_client(kubeconfig))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-watch", daemon=True)

    def __enter__(self) -> FleetWatch:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        version = self._relist()
        self._thread = threading.Thread(
            target=self._run, args=(version,), name="fleet-watch", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._api.api_client.close()

    def _relist(self) -> str:
        listed = self._api.list_namespaced_pod(self.namespace, label_selector=self.selector)
        with self._lock:
            self.pods = {}
            for pod in listed.items:
                self._apply(pod)
            self._sample()
        return str(listed.metadata.resource_version if listed.metadata else "")

    def _apply(self, pod: Any, deleted: bool = False) -> None:
        name = pod.metadata.name
        self.events.append(
            PodEvent(
                time.monotonic(),
                name,
                pod.metadata.uid,
                _ready(pod) and not deleted,
                pod.metadata.deletion_timestamp is not None,
                deleted,
                unready_why(pod, gone=deleted),
            )
        )
        if deleted:
            self.pods.pop(name, None)
            return
        ports = pod.spec.containers[0].ports or []
        seen = self.uids_seen.setdefault(name, [])
        if pod.metadata.uid not in seen:
            seen.append(pod.metadata.uid)
        self.pods[name] = PodState(
            uid=pod.metadata.uid,
            ip=pod.status.pod_ip,
            port=int(ports[0].container_port) if ports else 7070,
            ready=_ready(pod),
        )

    def _sample(self) -> None:
        up = {name for name, p in self.pods.items() if p.ready}
        self.samples.append(Sample(time.monotonic(), tuple(sorted(self.members - up))))

    def _run(self, version: str = "") -> None:
        while not self._stop.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    self._api.list_namespaced_pod,
                    self.namespace,
                    label_selector=self.selector,
                    resource_version=version,
                    timeout_seconds=5,
                ):
                    pod = event["object"]
                    version = pod.metadata.resource_version
                    with self._lock:
                        self._apply(pod, deleted=event["type"] == "DELETED")
                        self._sample()
                    if self._stop.is_set():
                        break
            except client.ApiException as exc:
                if exc.status != 410 or self._stop.is_set():
                    time.sleep(0.2)
                version = self._relist()
            except urllib3.exceptions.HTTPError:
                time.sleep(0.2)
            finally:
                stream.stop()  # type: ignore[no-untyped-call]

    # --- what tests read --------------------------------------------------------------

    def ready_addresses(self) -> list[str]:
        with self._lock:
            return sorted(f"http://{p.ip}:{p.port}" for p in self.pods.values() if p.ready and p.ip)

    def most_unavailable(self, since: float = 0.0) -> Sample:
        with self._lock:
            relevant = [s for s in self.samples if s.at >= since] or [Sample(0.0, ())]
        return max(relevant, key=lambda s: len(s.unavailable))

    def why_down(self, member: str, at: float) -> str:
        """What made `member` unavailable at `at`: its last pod event's `unready_why`."""
        with self._lock:
            seen = [e for e in self.events if e.name == member and e.at <= at]
        return seen[-1].why if seen else "no pod"

    def snapshot(self) -> dict[str, PodState]:
        with self._lock:
            return dict(self.pods)


class SliceEndpoints:
    """Ready endpoints from EndpointSlices, for clusters that publish them (kind, real ones)."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self._api = client.DiscoveryV1Api(api_client(kubeconfig))
        self._namespace = namespace
        self._cache: tuple[float, list[str]] = (0.0, [])

    def ready_addresses(self) -> list[str]:
        at, cached = self._cache
        if time.monotonic() - at < 0.1:
            return cached
        # The nodes' own Services (they carry the instance label); the fleet's entry Service
        # selects the same pods and would list every address twice.
        slices = self._api.list_namespaced_endpoint_slice(
            self._namespace, label_selector=f"{APP_SELECTOR},app.kubernetes.io/instance"
        )
        out: list[str] = []
        for s in slices.items:
            port = next((p.port for p in s.ports or [] if p.port), 7070)
            for ep in s.endpoints or []:
                if ep.conditions is not None and ep.conditions.ready:
                    out.extend(f"http://{addr}:{port}" for addr in ep.addresses)
        self._cache = (time.monotonic(), sorted(out))
        return self._cache[1]


@dataclass(frozen=True)
class Failure:
    at: float
    address: str
    kind: str
    error: str


@dataclass
class LoadReport:
    total: int = 0
    ok: int = 0
    failures: list[Failure] = field(default_factory=list)

    def summary(self) -> str:
        head = f"{self.ok}/{self.total} requests ok, {len(self.failures)} failed"
        return head + "".join(f"\n  {f}" for f in self.failures[:20])


class LoadGenerator:
    """Searches and fetches sent to ready endpoints at about `rate` requests per second."""

    def __init__(
        self,
        endpoints: Callable[[], list[str]],
        *,
        package_id: str | None,
        keyword: str,
        rate: float = 20.0,
        workers: int = 4,
        timeout: float = 5.0,
        seed: int = 7,
    ) -> None:
        self._endpoints = endpoints
        self._paths = [f"/api/v1/search?q={keyword}"]
        if package_id is not None:
            self._paths += [
                f"/api/v1/packages/{package_id}",
                f"/api/v1/packages/{package_id}/content",
            ]
        self._interval = workers / rate
        self._timeout = urllib3.Timeout(connect=1.0, read=timeout)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.report = LoadReport()
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"load-{i}", daemon=True)
            for i in range(workers)
        ]

    def __enter__(self) -> LoadGenerator:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> LoadReport:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        return self.report

    def _record(self, ok: bool, address: str, path: str, error: str = "") -> None:
        with self._lock:
            self.report.total += 1
            if ok:
                self.report.ok += 1
            else:
                kind = path.rsplit("/", 1)[-1].split("?", maxsplit=1)[0]
                self.report.failures.append(Failure(time.monotonic(), address, kind, error))

    def _work(self, index: int) -> None:
        http = urllib3.PoolManager(retries=False, timeout=self._timeout, maxsize=1)
        paths = itertools.cycle(self._paths[index % len(self._paths) :] + self._paths)
        time.sleep(self._interval * index / len(self._threads))
        while not self._stop.is_set():
            started = time.monotonic()
            path = next(paths)
            addresses = self._endpoints()
            if not addresses:
                self._record(False, "-", path, "no ready endpoint")
            else:
                with self._lock:
                    address = self._rng.choice(addresses)
                try:
                    resp = http.request("GET", address + path, headers={"Connection": "close"})
                    ok = resp.status == 200
                    self._record(
                        ok, address, path, "" if ok else f"HTTP {resp.status}: {resp.data[:200]!r}"
                    )
                except urllib3.exceptions.HTTPError as exc:
                    self._record(False, address, path, repr(exc))
            self._stop.wait(max(0.0, self._interval - (time.monotonic() - started)))


def without_failures(
    endpoints: Callable[[], list[str]],
    act: Callable[[], T],
    *,
    package_id: str | None,
    keyword: str,
    rate: float = 20.0,
) -> tuple[T, float, LoadReport]:
    """Run `act` (a rollout, say) under load; its result, how long it took, and the load's
    report, which must hold at least half the requests the rate promises and no failure."""
    with LoadGenerator(endpoints, package_id=package_id, keyword=keyword, rate=rate) as load:
        time.sleep(2)
        started = time.monotonic()
        result = act()
        took = time.monotonic() - started
        time.sleep(2)
    report = load.report
    assert report.total > rate * took * 0.5, report.summary()
    assert report.failures == [], report.summary()
    return result, took, report
