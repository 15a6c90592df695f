"""The chaos suite's faults, publish load and observer (tests/e2e/test_chaos.py).

- `FAULTS`: each fault injects itself and heals (blocking), through `hack/cluster.sh`
  verbs (`restart`, `signal`, `signal-pod`, `stop-kubelet`, `start-node`) or the test's
  operator process; `member` is the fleet member a node-local fault hits.
- `Publisher`: publishes a new version every `interval` seconds to a random ready
  member, signed with its own author key, and keeps the ids the fleet acknowledged.
- `Observer`: samples, once a second, every MarketplaceNode's phase and Ready condition
  and the operator's metrics, so a test can say where a fault showed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import random
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from e2e_helpers import ROOT, OperatorProcess, condition
from marketplace_node import api_client, publishing
from marketplace_node.api_client import CliError
from marketplace_operator import k8s
from marketplace_operator.handlers.policy import BANLISTS
from marketplace_protocol import identity

CLUSTER = ROOT / "hack" / "cluster.sh"
HTTP = urllib3.PoolManager(maxsize=8, retries=False, timeout=urllib3.Timeout(connect=1, read=5))


def cluster(*args: str, timeout: float = 300) -> None:
    subprocess.run([str(CLUSTER), *args], check=True, timeout=timeout, capture_output=True)


def local_kubeconfig() -> str:
    out = subprocess.run([str(CLUSTER), "kubeconfig"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@dataclass
class Supervisor:
    """What a real control plane has and `hack/cluster.sh` does not: something that starts
    a control-plane component again when it exited (kubelet static pods, systemd). Every
    few seconds, `hack/cluster.sh up` if `status` reports one dead; `restarted` says which."""

    interval: float = 5.0
    restarted: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=300)

    def _run(self) -> None:
        components = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
        while not self._stop.wait(self.interval):
            out = subprocess.run(
                [str(CLUSTER), "status"], capture_output=True, text=True, timeout=60, check=False
            ).stdout
            dead = [c for c in components if f"DEAD     {c}\n" in out + "\n"]
            if dead:
                self.restarted += dead
                subprocess.run([str(CLUSTER), "up"], capture_output=True, timeout=300, check=False)


@dataclass
class Target:
    """What a fault acts on: the namespace, one member, the operator."""

    kube: k8s.BlockingKube
    namespace: str
    member: str
    operator: OperatorProcess
    stop_seconds: float = 30.0


def _kill_etcd(t: Target) -> None:
    cluster("signal", "etcd", "KILL")
    time.sleep(2)
    cluster("up")  # starts etcd again on its kept data directory


def _kill_operator(t: Target) -> None:
    t.operator.kill()
    time.sleep(1)
    t.operator.start()


def _kill_node(t: Target) -> None:
    cluster("signal-pod", f"{t.namespace}/{t.member}", "KILL")  # the kubelet restarts it


def _stop_node(t: Target) -> None:
    cluster("signal-pod", f"{t.namespace}/{t.member}", "STOP")
    try:
        time.sleep(t.stop_seconds)
    finally:
        cluster("signal-pod", f"{t.namespace}/{t.member}", "CONT")


def _kill_kubelet(t: Target) -> None:
    pod = t.kube.get(k8s.PODS, t.namespace, t.member)
    node = str((pod or {}).get("spec", {}).get("nodeName") or "")
    assert node, f"pod {t.member} is not on a Node"
    cluster("stop-kubelet", node)  # its pods run on, unmanaged
    try:
        time.sleep(60)  # past the Node's 40 s grace: the node lifecycle controller notices
    finally:
        cluster("start-node", node)


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[Target], None]
    node_local: bool  # takes `member` down itself (excused from the disruption budget)


FAULTS = {
    f.name: f
    for f in (
        Fault("kube-apiserver restart", lambda t: cluster("restart", "kube-apiserver"), False),
        Fault("etcd kill -9", _kill_etcd, False),
        Fault("operator SIGKILL", _kill_operator, False),
        Fault("node SIGKILL", _kill_node, True),
        Fault("node SIGSTOP 30 s", _stop_node, True),
        Fault("Node's kubelet killed", _kill_kubelet, True),
    )
}


# --- publish load ------------------------------------------------------------------------


@dataclass
class Publisher:
    """Publishes `chaos-load` versions to random ready members; keeps the acknowledged ids."""

    addresses: Callable[[], list[str]]
    workdir: Path
    interval: float = 1.0
    acknowledged: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._key = self.workdir / "chaos-author.pem"
        identity.load_or_create(self._key)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._rng = random.Random(15)

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def publish(self, address: str, version: str, name: str = "chaos-load") -> str:
        """One signed publish; the package id once the node acknowledged it (else CliError)."""
        content = self.workdir / "chaos-payload"
        content.write_bytes(f"{name} {version} {uuid.uuid4()}\n".encode() * 32)
        args = argparse.Namespace(
            node=address, file=content, name=name, version=version,
            description="chaos load", category="tools", tag=[], key_file=self._key,
        )  # fmt: skip
        return str(publishing.publish(args, api_client.call)["id"])

    def _run(self) -> None:
        for i in range(1, 1_000_000):
            if self._stop.wait(self.interval):
                return
            ready = self.addresses()
            if not ready:
                self.refused.append("no ready member")
                continue
            try:
                self.acknowledged.append(self.publish(self._rng.choice(ready), f"1.0.{i}"))
            except CliError as exc:
                self.refused.append(str(exc))


def address(kube: k8s.BlockingKube, namespace: str, member: str, port: int = 7070) -> str:
    """The member's node API base URL (its pod's IP; the private listener on 9070)."""
    pod = kube.get(k8s.PODS, namespace, member)
    return f"http://{((pod or {}).get('status') or {}).get('podIP')}:{port}"


def holders(kube: k8s.BlockingKube, namespace: str, members: list[str], package: str) -> int:
    """How many members answer 200 for `package`'s view."""
    count = 0
    for name in members:
        try:
            resp = HTTP.request(
                "GET", f"{address(kube, namespace, name)}/api/v1/packages/{package}"
            )
        except urllib3.exceptions.HTTPError:
            continue
        count += resp.status == 200
    return count


# --- policy change -----------------------------------------------------------------------


def change_policy(kube: k8s.BlockingKube, namespace: str, fleet: str) -> None:
    """A new BanList for `fleet` (a fresh peer id banned): a new policy version."""
    peer = identity.Identity.generate().peer_id
    kube.create(
        BANLISTS,
        {
            "apiVersion": "marketplace.p2p.dev/v1alpha1",
            "kind": "BanList",
            "metadata": {"name": f"chaos-{uuid.uuid4().hex[:6]}", "namespace": namespace},
            "spec": {"fleet": fleet, "entries": [{"peerId": peer, "reason": "chaos"}]},
        },
    )


def policy_everywhere(
    kube: k8s.BlockingKube, namespace: str, fleet: str, members: list[str]
) -> bool:
    """Every member runs the policy version the fleet's ConfigMap carries."""
    cm = kube.get(k8s.CONFIGMAPS, namespace, f"{fleet}-policy")
    want = ((cm or {}).get("metadata", {}).get("annotations") or {}).get(
        "marketplace.p2p.dev/policy-version"
    )
    secret = kube.get(k8s.SECRETS, namespace, f"{fleet}-admin")
    if want is None or secret is None:
        return False
    token = base64.b64decode(secret["data"]["token"]).decode()
    for name in members:
        try:
            resp = HTTP.request(
                "GET", f"{address(kube, namespace, name, 9070)}/admin/v1/status",
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
        except urllib3.exceptions.HTTPError:
            return False
        if resp.status != 200 or str(resp.json().get("policyVersion")) != want:
            return False
    return True


# --- where a fault shows -----------------------------------------------------------------


def metric_sum(text: str, name: str, exclude: str = "") -> float:
    """The sum of a metric's samples in Prometheus text (label filter: not `exclude`)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (not exclude or exclude not in line):
            rest = line[len(name) :]
            if rest[:1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Observer:
    """Samples MarketplaceNode status and the operator's metrics once a second."""

    kube: k8s.BlockingKube
    namespace: str
    metrics_url: str
    # (monotonic time, member, phase, Ready status, Ready reason)
    status: list[tuple[float, str, str, str, str]] = field(default_factory=list)
    metrics: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            now = time.monotonic()
            with contextlib.suppress(Exception):  # the API server may be the fault
                for obj in self.kube.list(k8s.MNODES, self.namespace):
                    ready = condition(obj, "Ready") or {}
                    phase = str((obj.get("status") or {}).get("phase"))
                    self.status.append(
                        (now, obj["metadata"]["name"], phase,
                         str(ready.get("status")), str(ready.get("reason")))
                    )  # fmt: skip
            with contextlib.suppress(urllib3.exceptions.HTTPError):
                self.metrics.append((now, HTTP.request("GET", self.metrics_url).data.decode()))

    def unready(self, since: float, member: str | None = None) -> list[tuple[str, str, str]]:
        """(member, phase, reason) of every sample since `since` that was not Ready."""
        return [
            (m, phase, reason)
            for at, m, phase, ready, reason in self.status
            if at >= since and ready != "True" and (member is None or m == member)
        ]

    def metric_grew(self, since: float, name: str, exclude: str = "") -> bool:
        before = [metric_sum(t, name, exclude) for at, t in self.metrics if at < since]
        after = [metric_sum(t, name, exclude) for at, t in self.metrics if at >= since]
        if not after:
            return False
        return max(after) > (before[-1] if before else 0.0)

    def counter_reset(self, since: float, name: str) -> bool:
        """A counter went down after `since`: the process behind the metrics restarted."""
        values = [(at, metric_sum(t, name)) for at, t in self.metrics]
        return any(
            later < earlier and at >= since
            for (_, earlier), (at, later) in itertools.pairwise(values)
        )

    def degraded_gauge(self, since: float) -> bool:
        return any(
            'phase="Degraded"' in line and not line.endswith(" 0.0")
            for at, t in self.metrics
            if at >= since
            for line in t.splitlines()
            if line.startswith("marketplace_operator_managed_nodes")
        )


def events_since(kube: k8s.BlockingKube, namespace: str, wall: float) -> list[dict[str, Any]]:
    """Events in `namespace` last seen at or after `wall` (seconds since the epoch)."""
    from datetime import datetime  # noqa: PLC0415

    items = kube.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    out = []
    for e in items:
        stamp = e.get("lastTimestamp") or e.get("eventTime") or e["metadata"]["creationTimestamp"]
        if datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() >= int(wall):
            out.append(e)
    return out
