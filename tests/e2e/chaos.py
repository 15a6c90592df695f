"""The chaos suite's faults, publish load and observer (tests/e2e/test_chaos.py).

- `FAULTS`: each fault injects itself and heals (blocking), through `hack/cluster.sh`
  verbs (`restart`, `signal`, `signal-pod`, `stop-kubelet`, `start-node`), the test's
  operator process, the member's data volume (a 64 MiB tmpfs, filled) or its wall clock
  (libfaketime, stepped); `member` is the fleet member a node-local fault hits.
- `Publisher`: publishes a new version every `interval` seconds to a random ready
  member, signed with its own author key, and keeps the ids the fleet acknowledged.
- `Observer`: samples, once a second, every MarketplaceNode's phase and Ready condition
  and the operator's metrics, so a test can say where a fault showed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import itertools
import os
import random
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import urllib3
from e2e_helpers import ROOT, OperatorProcess, condition
from marketplace_node import api_client, publishing
from marketplace_node.api_client import CliError
from marketplace_operator import k8s
from marketplace_operator.handlers.policy import BANLISTS
from marketplace_operator.render import names
from marketplace_protocol import identity

CLUSTER = ROOT / "hack" / "cluster.sh"
HTTP = urllib3.PoolManager(maxsize=8, retries=False, timeout=urllib3.Timeout(connect=1, read=5))


def cluster(*args: str, timeout: float = 300) -> None:
    subprocess.run([str(CLUSTER), *args], check=True, timeout=timeout, capture_output=True)


def local_kubeconfig() -> str:
    out = subprocess.run([str(CLUSTER), "kubeconfig"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def etcd_started() -> float | None:
    """When the cluster's etcd process started, from its own /metrics (None: no answer).

    Where an etcd crash shows when nothing the operator did met it: a `kill -9` and a
    restart within the API server's readiness probing passes `/readyz`, and so the
    operator's heartbeat, by (1 run in 3 of etcd kill -9 during a rollout); etcd's
    `process_start_time_seconds` moves, as a cluster's Prometheus scraping etcd sees.
    """
    url = f"http://127.0.0.1:{os.environ.get('ETCD_PORT', '2379')}/metrics"
    with contextlib.suppress(urllib3.exceptions.HTTPError):
        text = HTTP.request("GET", url).data.decode()
        if "process_start_time_seconds" in text:
            return metric_sum(text, "process_start_time_seconds")
    return None


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


# --- a full data volume ------------------------------------------------------------------

# The member's data claim: a tmpfs of this size (the local provisioner's `local-tmpfs`
# class), so that filling it fills no more than itself.
SMALL_VOLUME = {"storage": {"size": "64Mi", "storageClassName": "local-tmpfs"}}
FILLER = ".chaos-filler"


def volume_dir(kube: k8s.BlockingKube, namespace: str, member: str) -> Path:
    """The host directory of the member's data volume (its PersistentVolume's local path)."""
    claim = kube.get(k8s.PVCS, namespace, names.data_pvc_name(member))
    volume = str(((claim or {}).get("spec") or {}).get("volumeName") or "")
    assert volume, f"the data claim of {member} is not bound"
    pv = kube.request("GET", f"/api/v1/persistentvolumes/{volume}")
    return Path(pv["spec"]["local"]["path"])


def fill(directory: Path) -> int:
    """Write a filler file into `directory` until its filesystem has no byte left (ENOSPC);
    returns its size. What a runaway writer beside the node would do."""
    written = 0
    with (directory / FILLER).open("ab", buffering=0) as out:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    written += out.write(block) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        with contextlib.suppress(OSError):
            os.fsync(out.fileno())
    return written


def _fill_volume(t: Target) -> None:
    directory = volume_dir(t.kube, t.namespace, t.member)
    fill(directory)
    free = shutil.disk_usage(directory).free
    assert free < 4096, f"the volume of {t.member} still has {free} bytes free"
    try:
        time.sleep(t.stop_seconds)
    finally:
        (directory / FILLER).unlink(missing_ok=True)


# --- a wall-clock jump --------------------------------------------------------------------

JUMP_SECONDS = 600  # past the 300 s skew window of signed requests and entries


def faketime_library() -> str:
    """Debian's libfaketime (hack/cluster.sh installs it)."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    assert found, "libfaketime is not installed (hack/cluster.sh up installs it)"
    return str(found[0])


def clock_file(namespace: str, member: str) -> Path:
    """The file libfaketime reads the member's wall-clock offset from (in the cluster's
    directory, which the member's container sees)."""
    path = Path(local_kubeconfig()).parent / "faketime" / f"{namespace}.{member}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("+0\n")
    return path


def faked_clock(namespace: str, member: str) -> dict[str, Any]:
    """Spec fields that run the member under libfaketime, its wall clock offset by what
    `clock_file` says. Only the wall clock: FAKETIME_DONT_FAKE_MONOTONIC keeps
    CLOCK_MONOTONIC real, as an NTP step does (with it faked, Python's timed lock waits,
    computed on the faked clock and waited on the real one, hang for the offset).
    libfaketime 0.9.10 then fails an absolute clock_nanosleep on the monotonic clock
    (EINVAL; Python's `time.sleep`): the node never sleeps that way, it awaits.

    FAKETIME_FORCE_MONOTONIC_FIX=0: libfaketime's rewrite of `pthread_cond_timedwait` on
    monotonic condition variables otherwise mistimes CPython's GIL hand-over (a 5 ms timed
    wait on such a variable), at any offset, +0 included: with one busy thread beside the
    event loop (the node's SQLite thread under read load) the loop woke 10-40 times late
    and the busy thread ran 6-90 times slower (docs/operator.md, "The chaos suite"). The
    jumped member then missed its 2 s liveness probe and was killed, again after each
    restart, a fault of the injector and not of the node."""
    env = {
        "LD_PRELOAD": faketime_library(),
        "FAKETIME_TIMESTAMP_FILE": str(clock_file(namespace, member)),
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_FORCE_MONOTONIC_FIX": "0",
        "FAKETIME_CACHE_DURATION": "1",  # the file is read again each second
    }
    return {"template": {"container": {"env": [{"name": k, "value": v} for k, v in env.items()]}}}


def node_date(kube: k8s.BlockingKube, namespace: str, member: str) -> float | None:
    """The member's wall clock, from its HTTP `Date` header (None: no answer)."""
    try:
        resp = HTTP.request("GET", f"{address(kube, namespace, member)}/api/v1/status")
    except urllib3.exceptions.HTTPError:
        return None
    date = resp.headers.get("Date")
    return parsedate_to_datetime(date).timestamp() if date else None


def _jump_clock(t: Target) -> None:
    path = clock_file(t.namespace, t.member)
    path.write_text(f"+{JUMP_SECONDS}\n")
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the jump took: the member's Date moved on
            seen = node_date(t.kube, t.namespace, t.member)
            if seen is not None and seen - time.time() > JUMP_SECONDS / 2:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the wall clock of {t.member} did not jump")
        time.sleep(t.stop_seconds)
    finally:
        path.write_text("+0\n")  # and back: a step of -600 s


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[Target], None]
    node_local: bool  # takes `member` down itself (excused from the disruption budget)
    # Spec fields the faulted member needs from the start, by (namespace, member).
    member_spec: Callable[[str, str], dict[str, Any]] | None = None
    # The error code some publish must have been refused with (the member's own word).
    refusal: str | None = None


FAULTS = {
    f.name: f
    for f in (
        Fault("kube-apiserver restart", lambda t: cluster("restart", "kube-apiserver"), False),
        Fault("etcd kill -9", _kill_etcd, False),
        Fault("operator SIGKILL", _kill_operator, False),
        Fault("node SIGKILL", _kill_node, True),
        Fault("node SIGSTOP 30 s", _stop_node, True),
        Fault("Node's kubelet killed", _kill_kubelet, True),
        Fault("data volume full", _fill_volume, True, lambda ns, m: SMALL_VOLUME, "storage_full"),
        Fault(f"wall clock +{JUMP_SECONDS} s", _jump_clock, True, faked_clock),
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


def refusal_code(refused: str) -> str:
    """The error code in a `Publisher.refused` entry ("... answered 507 storage_full: ..."),
    else what it says (no ready member, cannot reach)."""
    match = re.search(r" answered (\d{3}) ([a-z_]+)", refused)
    if match is None:
        return "unreachable" if "cannot reach" in refused else refused[:40]
    return match[2]


def address(kube: k8s.BlockingKube, namespace: str, member: str, port: int = 7070) -> str:
    """The member's node API base URL (its pod's IP; the private listener on 9070)."""
    pod = kube.get(k8s.PODS, namespace, member)
    return f"http://{((pod or {}).get('status') or {}).get('podIP')}:{port}"


def holders(kube: k8s.BlockingKube, namespace: str, members: list[str], package: str) -> int:
    """How many members answer 200 for `package`'s view."""
    return len(members) - len(lacking(kube, namespace, members, package))


def lacking(kube: k8s.BlockingKube, namespace: str, members: list[str], package: str) -> list[str]:
    """The members that do not answer 200 for `package`'s view."""
    out = []
    for name in members:
        try:
            resp = HTTP.request(
                "GET", f"{address(kube, namespace, name)}/api/v1/packages/{package}"
            )
        except urllib3.exceptions.HTTPError:
            out.append(name)
            continue
        if resp.status != 200:
            out.append(name)
    return out


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

    def troubled(self, since: float, member: str | None = None) -> list[tuple[str, str, str]]:
        """(member, phase, reason) of every sample since `since` that was not Ready, or
        Degraded (a node that serves but reports its own machine wrong)."""
        return [
            (m, phase, reason)
            for at, m, phase, ready, reason in self.status
            if at >= since
            and (ready != "True" or phase == "Degraded")
            and (member is None or m == member)
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
