"""What the cluster benchmarks share: CRDs, polling, the operator as a subprocess, clean-up.

Not a benchmark (`python -m bench` runs `bench_*` modules only). The order of clean-up
matters: stop the operator first, then `release_namespace`. A running operator puts its
finalizer back on every live object it lost it from; stopped afterwards, it leaves those
finalizers behind and the namespace Terminating forever. Deleting the namespace under a
running operator does not finalize them either: kopf 1.45 stops watching a namespace at its
first Terminating event whose conditions are all False, before its objects are deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import urllib3
from kubernetes import config, watch
from marketplace_operator import errors, k8s
from marketplace_operator.handlers.policy import BANLISTS, RATELIMITPOLICIES
from marketplace_operator.model.common import LABEL_PREFIX

from bench import memory, report
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[1]
# kopf's finalizer, as `handlers.mnode.configure` names it.
FINALIZER = f"{LABEL_PREFIX.rstrip('/')}/finalizer"
# Every kind of ours. kopf finalizes MarketplaceNodes (delete handler) and MarketplaceFleets
# (daemon); the policy kinds carry none today, listed so that a new handler cannot leak.
OURS = (k8s.MNODES, k8s.FLEETS, BANLISTS, RATELIMITPOLICIES)


def require_kubeconfig() -> str:
    """The cluster `make bench` points benchmarks at (its kubeconfig's path)."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        raise report.NotRun("KUBECONFIG is not set (run through `make bench`)")
    return kubeconfig


def kubectl(*args: str) -> None:
    """Run the cluster's own kubectl (`.cluster/bin`) if there is one, else the one on PATH."""
    local = ROOT / ".cluster" / "bin" / "kubectl"
    binary = str(local) if local.exists() else "kubectl"
    subprocess.run([binary, *args], check=True, capture_output=True, timeout=120)


def apply_crds() -> None:
    """Apply the repository's CRDs and wait until the API server serves them."""
    for f in sorted((ROOT / "crds").glob("*.yaml")):
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
        kubectl("wait", "--for=condition=Established", "-f", str(f), "--timeout=60s")


def restart() -> float:
    """Stop and start the local cluster (`hack/cluster.sh`, its state kept, with the
    settings of this process's environment); its seconds. A scale run gives each size
    fresh control-plane and kubelet processes this way."""
    started = time.monotonic()
    for verb in ("down", "up"):
        subprocess.run(
            [str(ROOT / "hack" / "cluster.sh"), verb],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=300,
        )
    return time.monotonic() - started


def wait(what: str, probe: Callable[[], object], *, deadline: float, interval: float) -> float:
    """Seconds until `probe()` is true, polling every `interval`; TimeoutError after `deadline`.

    A probe the API server did not answer (`errors.Unavailable`: a timeout on a loaded
    machine) is "not yet", not the end of the run: one 10 s timeout of a LIST ended a whole
    100/300/1,000 bench-scale run at 100 nodes (issue 15)."""
    started = time.monotonic()
    while not _holds(probe):
        if time.monotonic() - started > deadline:
            raise TimeoutError(f"{what} not reached within {deadline}s")
        time.sleep(interval)
    return time.monotonic() - started


def _holds(probe: Callable[[], object]) -> bool:
    try:
        return bool(probe())
    except errors.Unavailable:
        return False


class Operator:
    """The operator as a subprocess watching one namespace; restartable, log appended."""

    def __init__(self, namespace: str, log: Path) -> None:
        self.namespace, self.log = namespace, log
        self.metrics_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, env: Mapping[str, str] | None = None, *, deadline: float = 60.0) -> None:
        """Start it with `env` added to ours; return once its liveness endpoint answers."""
        port, self.metrics_port = free_port(), free_port()
        self._log = self.log.open("ab")
        self._proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/marketplace-operator"), "-n", self.namespace,
             "--metrics-port", str(self.metrics_port),
             "--liveness", f"http://127.0.0.1:{port}/healthz"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})},
        )  # fmt: skip
        http = urllib3.PoolManager()
        wait("operator liveness", lambda: _alive(http, port), deadline=deadline, interval=0.2)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s; a no-op if it is not running."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def metrics(self) -> dict[str, float]:
        """Its Prometheus samples now, by "name{labels}" as the text format spells them."""
        resp = urllib3.PoolManager().request(
            "GET", f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10.0
        )
        samples: dict[str, float] = {}
        for line in resp.data.decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples

    def rss_mib(self) -> float:
        assert self._proc is not None
        return memory.rss_mib(self._proc.pid)

    def cpu_seconds(self) -> float:
        assert self._proc is not None
        return memory.cpu_seconds(self._proc.pid)


def _alive(http: urllib3.PoolManager, port: int) -> bool:
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        return http.request("GET", url, timeout=1.0, retries=False).status == 200
    except urllib3.exceptions.HTTPError:
        return False


def without_ours(obj: dict[str, Any]) -> list[str] | None:
    """`obj`'s finalizers without ours, or None if it carries none of ours (nothing to do)."""
    finalizers: list[str] = obj["metadata"].get("finalizers") or []
    if FINALIZER not in finalizers:
        return None
    return [f for f in finalizers if f != FINALIZER]


def release_namespace(kube: k8s.BlockingKube, namespace: str) -> None:
    """Strip our finalizers from our objects and delete the namespace. Call it only with no
    operator watching `namespace` (module docstring); the objects' delete handlers do not run."""
    for resource in OURS:
        with contextlib.suppress(errors.NotFound):
            for obj in kube.list(resource, namespace):
                remaining = without_ours(obj)
                if remaining is None:
                    continue
                with contextlib.suppress(errors.NotFound):
                    patch = {"metadata": {"finalizers": remaining or None}}
                    kube.patch(resource, namespace, obj["metadata"]["name"], patch)
    with contextlib.suppress(errors.NotFound):
        kube.request("DELETE", f"/api/v1/namespaces/{namespace}")


def wait_namespace_gone(kube: k8s.BlockingKube, namespace: str, timeout: float) -> float | None:
    """Seconds until `namespace` is gone (its pods ended, its objects collected), or None
    after `timeout`. A benchmark that measures the next thing while the namespace controller,
    the garbage collector and the kubelets still tear the last one down measures both."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            kube.request("GET", f"/api/v1/namespaces/{namespace}")
        except errors.NotFound:
            return time.monotonic() - started
        time.sleep(1.0)
    return None


class Watched:
    """The current objects of some collections, kept by watches in background threads.

    What a benchmark measures must not be slowed by measuring it: polling LISTs of
    twenty pods every 50 ms loads the API server the system under test needs, and more
    for a workload with more kinds to look at. A watch costs the same whatever is
    watched. Events stay plain JSON: the client's model classes took about half a CPU
    second per start-up of twenty nodes, on the two cores the run measures.
    `wait_until` re-evaluates its predicate on every change.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._watches: list[watch.Watch] = []
        config.load_kube_config()  # type: ignore[no-untyped-call] # KUBECONFIG; the API classes use this default
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}
        # name -> called with each changed object as its event arrives (in the watch thread)
        self._listeners: dict[str, Callable[[dict[str, Any]], None]] = {}

    def listen(self, name: str, fn: Callable[[dict[str, Any]], None]) -> None:
        """Call `fn` with every object of `name` an event brings from now on, as it
        arrives: a time taken then is the event's, not that of a later look."""
        with self._changed:
            self._listeners[name] = fn

    def follow(self, name: str, list_fn: Callable[..., Any], *args: Any) -> None:
        """Keep `objects[name]` current: list with `list_fn(*args)` (e.g.
        `CoreV1Api().list_namespaced_pod, namespace`), then watch from that version."""
        listed = json.loads(list_fn(*args, _preload_content=False).data)
        with self._changed:
            self.objects[name] = {o["metadata"]["name"]: o for o in listed.get("items") or []}
        version = listed["metadata"]["resourceVersion"]
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        self._watches.append(stream)
        thread = threading.Thread(
            target=self._run, args=(name, stream, list_fn, args, version), daemon=True
        )
        thread.start()

    def _run(
        self, name: str, stream: watch.Watch, list_fn: Callable[..., Any], args: tuple[Any, ...],
        version: str,
    ) -> None:  # fmt: skip
        # Without timeout_seconds the client re-watches from the last resourceVersion.
        with contextlib.suppress(Exception):  # the stream ends with the run (or the namespace)
            self._follow_events(name, stream, list_fn, args, version)

    def _follow_events(
        self, name: str, stream: watch.Watch, list_fn: Callable[..., Any], args: tuple[Any, ...],
        version: str,
    ) -> None:  # fmt: skip
        events = stream.stream(list_fn, *args, resource_version=version, deserialize=False)  # type: ignore[no-untyped-call]
        for event in events:
            obj = event["object"]
            # Plain events do not advance the client's version: track it, so a re-watch
            # (the server ends watches every few minutes) resumes where this one ended.
            stream.resource_version = obj["metadata"]["resourceVersion"]
            with self._changed:
                if event["type"] == "DELETED":
                    self.objects[name].pop(obj["metadata"]["name"], None)
                else:
                    self.objects[name][obj["metadata"]["name"]] = obj
                    listener = self._listeners.get(name)
                    if listener is not None:
                        listener(obj)
                self._changed.notify_all()

    def snapshot(self, name: str) -> list[dict[str, Any]]:
        """The objects of `name` now (a copy: the watch thread goes on changing them)."""
        with self._changed:
            return list(self.objects.get(name, {}).values())

    def wait_until(
        self,
        what: str,
        predicate: Callable[[dict[str, dict[str, dict[str, Any]]]], bool],
        *,
        deadline: float,
    ) -> float:
        """Seconds until `predicate(objects)` holds; TimeoutError after `deadline`."""
        started = time.monotonic()
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.objects), timeout=deadline):
                raise TimeoutError(f"{what} not reached within {deadline}s")
        return time.monotonic() - started

    def close(self) -> None:
        """Stop the watches (each thread ends at its stream's next event; they are daemons)."""
        for stream in self._watches:
            stream.stop()  # type: ignore[no-untyped-call]
