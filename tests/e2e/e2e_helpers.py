"""Helpers for end-to-end tests (imported by conftest.py and the tests): waiting with a
deadline, the operator as a child process, MarketplaceNode shorthands."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import urllib3
from marketplace_node import authors
from marketplace_operator import errors, k8s
from marketplace_protocol import identity

from tests.support import poll
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"


def node_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`marketplace-node ARGS` as a publisher would run it, with this run's author key."""
    key = Path(os.environ.get("MARKETPLACE_E2E_AUTHOR_KEY", "/tmp/marketplace-e2e-author.pem"))
    identity.load_or_create(key)
    return subprocess.run(
        [str(VENV_BIN / "marketplace-node"), *args],
        capture_output=True, text=True, timeout=30, check=False,
        env=os.environ | {authors.KEY_ENV: str(key)},
    )  # fmt: skip


T = TypeVar("T")
Kubectl = Callable[..., subprocess.CompletedProcess[str]]
Plugin = Callable[..., subprocess.CompletedProcess[str]]
"""`kubectl marketplace ARGS` in the test's namespace, through the real kubectl."""


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """`tests.support.poll.wait_for`, riding out API hiccups while things change."""
    return poll.wait_for(
        probe, timeout=timeout, interval=interval, what=what, ignoring=(errors.OperatorError,)
    )


def wait_http_ok(
    proc: subprocess.Popen[bytes], url: str, *, logs: Callable[[], str], timeout: float, what: str
) -> None:
    """Wait until the child process `proc` answers 200 at `url`; fail with its log if it
    exits first."""
    http = urllib3.PoolManager()

    def ok() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{logs()[-3000:]}")
        try:
            return http.request("GET", url, timeout=1.0, retries=False).status == 200
        except urllib3.exceptions.HTTPError:
            return False

    wait_for(ok, timeout=timeout, what=f"{what} at {url}")


class OperatorProcess:
    """The real operator as a child process, for start/stop/SIGKILL scenarios."""

    def __init__(
        self,
        *,
        kubeconfig: str,
        namespace: str,
        log_dir: Path,
        extra: list[str],
        name: str = "operator",
        program: Path = VENV_BIN / "marketplace-operator",
    ) -> None:
        self.name = name
        self.program = program
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log_dir = log_dir
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.liveness_port = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.runs}.log"

    def logs(self) -> str:
        return "".join(
            (self.log_dir / f"{self.name}-{i}.log").read_text(errors="replace")
            for i in range(1, self.runs + 1)
        )

    def start(self, *, timeout: float = 60) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.runs += 1
        self.liveness_port = free_port()
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.program),
                    "--namespace", self.namespace,
                    "--liveness", f"http://127.0.0.1:{self.liveness_port}/healthz",
                    "--metrics-port", "0",
                    *self.extra,
                ],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            )  # fmt: skip
        url = f"http://127.0.0.1:{self.liveness_port}/healthz"
        wait_http_ok(self.proc, url, logs=self.logs, timeout=timeout, what="the operator")

    def stop(self, *, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no finalizer removal, nothing flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()


# --- MarketplaceNode helpers ---------------------------------------------------------------


def mnode_body(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return custom_body("MarketplaceNode", name, namespace, **spec)


def custom_body(kind: str, name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """An object of one of our kinds (MarketplaceNode, MarketplaceFleet, BanList, ...)."""
    return {
        "apiVersion": "marketplace.p2p.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def pod_readiness(kube: k8s.BlockingKube, namespace: str, names: list[str]) -> str:
    """Each named pod's phase and conditions in one line each, for a wait's timeout."""
    lines = []
    for name in names:
        pod = kube.get(k8s.PODS, namespace, name)
        if pod is None:
            lines.append(f"{name}: no pod")
            continue
        status = pod.get("status") or {}
        conditions = ", ".join(
            f"{c.get('type')}={c.get('status')}"
            + (f" ({c.get('reason')}: {c.get('message', '')})" if c.get("reason") else "")
            for c in status.get("conditions") or []
        )
        deleting = " deleting" if pod["metadata"].get("deletionTimestamp") else ""
        lines.append(f"{name} {status.get('phase')}{deleting} {status.get('podIP')}: {conditions}")
    return "\n".join(lines)


def mnode_ready(kube: k8s.BlockingKube, namespace: str, name: str) -> dict[str, Any] | None:
    """The MarketplaceNode if its Ready condition is True for its current generation."""
    obj = kube.get(k8s.MNODES, namespace, name)
    ready = condition(obj, "Ready")
    if obj is None or ready is None or ready["status"] != "True":
        return None
    if obj["status"].get("observedGeneration") != obj["metadata"]["generation"]:
        return None
    return obj


def wait_ready(
    kube: k8s.BlockingKube, namespace: str, names: list[str], *, timeout: float = 90
) -> list[dict[str, Any]]:
    """Wait until every named MarketplaceNode is Ready; their objects."""
    out = []
    for name in names:

        def probe(name: str = name) -> dict[str, Any] | None:
            return mnode_ready(kube, namespace, name)

        out.append(wait_for(probe, timeout=timeout, what=f"MarketplaceNode {name} Ready"))
    return out


# --- Kubernetes Nodes ----------------------------------------------------------------------

LOCAL_KUBELET = "marketplace.p2p.dev/local-kubelet"


def local_nodes(kube: k8s.BlockingKube) -> list[str]:
    """Schedulable local Nodes (the real-kubelet Node is tainted and has no such label)."""
    items = kube.request("GET", "/api/v1/nodes")["items"]
    return sorted(
        n["metadata"]["name"]
        for n in items
        if (n["metadata"].get("labels") or {}).get(LOCAL_KUBELET) == "true"
        and not n.get("spec", {}).get("unschedulable")
    )


def placement(kube: k8s.BlockingKube, namespace: str, names: list[str]) -> dict[str, str]:
    """Pod -> its Node, for the pods already bound to one."""
    out = {}
    for name in names:
        pod = kube.get(k8s.PODS, namespace, name)
        node = ((pod or {}).get("spec") or {}).get("nodeName")
        if node:
            out[name] = node
    return out
