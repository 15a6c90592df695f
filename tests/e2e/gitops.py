"""Flux driving a fleet from git, for real: Flux's own controllers (built from their Go
modules by hack/build-flux.sh) as local processes against the test cluster, a git
repository served over smart HTTP, and the repository's layout:

    operator/   the chart rendered by `helm template` (helm-controller is not to be had
                here, docs/gitops/README.md) plus a kustomization.yaml that keeps the CRDs
                out of Flux's garbage collection
    fleet/      MarketplaceNodes and a BanList

Two Kustomizations apply them (fleet after operator, both `wait: true`, so Flux's kstatus
reads our Ready conditions and observedGeneration before it reports Ready).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_helpers import ROOT, Kubectl, wait_for, wait_http_ok
from marketplace_operator import k8s
from marketplace_protocol.identity import Identity

from tests.support.git_http import GitHttpServer
from tests.support.net import free_ports

GIT_REPOSITORIES = k8s.Resource("gitrepositories", "source.toolkit.fluxcd.io", "v1")
KUSTOMIZATIONS = k8s.Resource("kustomizations", "kustomize.toolkit.fluxcd.io", "v1")
DEPLOYMENTS = k8s.Resource("deployments", "apps", "v1")
FIELD_MANAGER = "kustomize-controller"  # Flux's server-side apply field manager
IMAGES = "localhost/marketplace-fleet"  # run from the checkout by the local kubelet

# Flux's advice for CRDs: never garbage-collect them (deleting a CRD deletes every object).
_KEEP_CRDS = {
    "target": {"kind": "CustomResourceDefinition"},
    "patch": yaml.safe_dump(
        [
            {
                "op": "add",
                "path": "/metadata/annotations/kustomize.toolkit.fluxcd.io~1prune",
                "value": "disabled",
            }
        ]
    ),
}


def tool(script: str, *args: str) -> str:
    """Run a hack/ script that prints a path (building what it names once, cached)."""
    return subprocess.run(
        [str(ROOT / "hack" / script), *args],
        check=True, capture_output=True, text=True, timeout=3600,
    ).stdout.strip()  # fmt: skip


def render_operator(
    release: str, namespace: str, *, log_level: str = "INFO", extra: Sequence[str] = ()
) -> str:
    """The chart as Flux gets it: `helm template`, namespaced scope, watching `namespace`
    (`extra`: more `--set` values)."""
    return subprocess.run(
        [
            tool("helm.sh"), "template", release, str(ROOT / "charts" / "marketplace-operator"),
            "--namespace", namespace,
            "--set", f"image.repository={IMAGES}/operator,image.tag=dev",
            "--set", f"nodeImage.repository={IMAGES}/node,nodeImage.tag=dev",
            "--set", f"scope=namespaced,watchNamespaces={{{namespace}}}",
            "--set", f"operator.logLevel={log_level}",
            *(arg for value in extra for arg in ("--set", value)),
        ],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip


def operator_dir(release: str, namespace: str, *, log_level: str = "INFO") -> dict[str, str]:
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["operator.yaml"],
        "patches": [_KEEP_CRDS],
    }
    return {
        "operator/operator.yaml": render_operator(release, namespace, log_level=log_level),
        "operator/kustomization.yaml": yaml.safe_dump(kustomization),
    }


def mnode(name: str, namespace: str, fleet: str) -> dict[str, Any]:
    return {
        "apiVersion": "marketplace.p2p.dev/v1alpha1",
        "kind": "MarketplaceNode",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"fleet": fleet, "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}},
    }


def banlist(name: str, namespace: str, fleet: str, peers: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "marketplace.p2p.dev/v1alpha1",
        "kind": "BanList",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"fleet": fleet, "entries": [{"peerId": p, "reason": "gitops"} for p in peers]},
    }


class Repo:
    """A bare repository (what the server serves) and a work tree that commits and pushes."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "srv" / "fleet.git"
        self.work = root / "work"
        self._git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=root)
        self._git("init", "-q", "-b", "main", str(self.work), cwd=root)

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        env = os.environ | {
            "GIT_AUTHOR_NAME": "e2e", "GIT_AUTHOR_EMAIL": "e2e@example.invalid",
            "GIT_COMMITTER_NAME": "e2e", "GIT_COMMITTER_EMAIL": "e2e@example.invalid",
        }  # fmt: skip
        return subprocess.run(
            ["git", *args], cwd=cwd or self.work, env=env,
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout.strip()  # fmt: skip

    def commit(self, files: Mapping[str, str | None], message: str) -> str:
        """Write (text) or remove (None) files, commit, push; the new commit's sha."""
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        self._git("add", "-A")
        self._git("commit", "-q", "-m", message)
        self._git("push", "-q", str(self.bare), "main")
        return self._git("rev-parse", "HEAD")


class FluxControllers:
    """source-controller and kustomize-controller as child processes (no leader election,
    every namespace), artifacts served on loopback; logs under `log_dir`."""

    def __init__(self, kubeconfig: str, log_dir: Path) -> None:
        self.bin = Path(tool("build-flux.sh"))
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.health: dict[str, int] = {}

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def _start(self, name: str, *args: str) -> None:
        metrics, health = free_ports(2)
        self.health[name] = health
        env = os.environ | {"KUBECONFIG": self.kubeconfig, "RUNTIME_NAMESPACE": "flux-system"}
        with (self.log_dir / f"{name}.log").open("wb") as log:
            self.procs[name] = subprocess.Popen(
                [
                    str(self.bin / name),
                    f"--metrics-addr=127.0.0.1:{metrics}", f"--health-addr=127.0.0.1:{health}",
                    "--enable-leader-election=false", "--log-encoding=json", *args,
                ],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip

    def start(self) -> None:
        (storage,) = free_ports(1)
        (self.log_dir / "artifacts").mkdir()
        self._start(
            "source-controller",
            f"--storage-path={self.log_dir / 'artifacts'}",
            f"--storage-addr=127.0.0.1:{storage}",
            f"--storage-adv-addr=127.0.0.1:{storage}",
        )
        self._start("kustomize-controller", "--requeue-dependency=2s", "--no-remote-bases=true")
        for name, port in self.health.items():
            url = f"http://127.0.0.1:{port}/readyz"
            logs = functools.partial(self.log, name)
            wait_http_ok(self.procs[name], url, logs=logs, timeout=60, what=name)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def flux_objects(namespace: str, url: str) -> list[dict[str, Any]]:
    """docs/gitops/flux-kustomizations.yaml, pointed at `url` in `namespace`, polling git
    every 2 s and retrying every 2 s (a test cannot wait for the documented minutes)."""
    docs = ROOT / "docs" / "gitops" / "flux-kustomizations.yaml"
    objects = [o for o in yaml.safe_load_all(docs.read_text()) if o]
    for obj in objects:
        obj["metadata"]["namespace"] = namespace
        spec = obj["spec"]
        if obj["kind"] == "GitRepository":
            spec.update(url=url, interval="2s", timeout="20s")
        else:
            spec.update(retryInterval="2s")
    return objects


FLEET = "gitops"
NODES = ["market-a", "market-b", "market-c"]
FIRST_BANNED = Identity.generate().peer_id


@dataclass
class Fleet:
    namespace: str
    release: str
    repo: Repo
    flux: FluxControllers
    server: GitHttpServer
    head: str


def node_file(name: str, namespace: str) -> tuple[str, str]:
    return f"fleet/{name}.yaml", yaml.safe_dump(mnode(name, namespace, FLEET))


def banlist_file(namespace: str, peers: list[str]) -> dict[str, str | None]:
    return {"fleet/banlist.yaml": yaml.safe_dump(banlist("abusers", namespace, FLEET, peers))}


def _delete_and_wait(kube: k8s.BlockingKube, res: k8s.Resource, namespace: str, name: str) -> None:
    if not kube.delete(res, namespace, name):
        return
    try:
        wait_for(lambda: kube.get(res, namespace, name) is None, timeout=90, what=f"{name} gone")
    finally:  # never leave a Flux finalizer holding the namespace
        if kube.get(res, namespace, name) is not None:
            kube.patch(res, namespace, name, {"metadata": {"finalizers": None}})


@contextlib.contextmanager
def gitops_fleet(
    kubeconfig: str, kube: k8s.BlockingKube, kubectl: Kubectl, root: Path
) -> Iterator[Fleet]:
    """Flux's CRDs and controllers, a namespace, the git server and the first commit (the
    operator and three nodes), applied and Ready; everything torn down after."""
    for crd in tool("build-flux.sh", "--crds").split():
        kubectl("apply", "--server-side", "--force-conflicts", "-f", crd)
        kubectl("wait", "--for=condition=Established", "-f", crd, "--timeout=60s")
    suffix = uuid.uuid4().hex[:5]
    namespace, release = f"e2e-flux-{suffix}", f"mpo-flux-{suffix}"
    kubectl("create", "namespace", namespace)
    repo = Repo(root)
    files: dict[str, str | None] = dict(operator_dir(release, namespace))
    files.update(node_file(name, namespace) for name in NODES)
    files.update(banlist_file(namespace, [FIRST_BANNED]))
    head = repo.commit(files, "the operator and a three-node fleet")
    flux = FluxControllers(kubeconfig, root)
    with GitHttpServer(repo.bare.parent) as server:
        try:
            flux.start()
            objects = flux_objects(namespace, f"{server.url}/fleet.git")
            kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
            applied(kube, namespace, "fleet", head, timeout=300)
            yield Fleet(namespace, release, repo, flux, server, head)
        finally:
            # Prune the nodes while the operator still runs their finalizers, then it.
            _delete_and_wait(kube, KUSTOMIZATIONS, namespace, "fleet")
            with contextlib.suppress(pytest.fail.Exception):
                wait_for(lambda: not kube.list(k8s.MNODES, namespace), timeout=60, what="no nodes")
            _delete_and_wait(kube, KUSTOMIZATIONS, namespace, "operator")
            _delete_and_wait(kube, GIT_REPOSITORIES, namespace, "fleet")
            flux.stop()
            # With the operator gone, its finalizers (nodes, the fleet object it made)
            # would hold the namespace forever.
            for res in (k8s.MNODES, k8s.FLEETS):
                for obj in kube.list(res, namespace):
                    patch = {"metadata": {"finalizers": None}}
                    kube.patch(res, namespace, obj["metadata"]["name"], patch)
            kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def as_flux_applies(kubectl: Kubectl, fleet: Fleet, name: str) -> str:
    """Kustomization `name`'s directory in git, built as Flux builds it, with the ownership
    labels Flux adds to every object it applies."""
    built = (
        kubectl("kustomize", str(fleet.repo.work / name)).stdout
        if name == "operator"
        else (
            "\n---\n".join(f.read_text() for f in sorted((fleet.repo.work / name).glob("*.yaml")))
        )
    )
    objects = [o for o in yaml.safe_load_all(built) if o]
    for obj in objects:
        labels = obj["metadata"].setdefault("labels", {})
        labels["kustomize.toolkit.fluxcd.io/name"] = name
        labels["kustomize.toolkit.fluxcd.io/namespace"] = fleet.namespace
    return yaml.safe_dump_all(objects)


def ready_condition(obj: dict[str, Any] | None) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return dict(c)
    return {}


def applied(
    kube: k8s.BlockingKube, namespace: str, name: str, sha: str, *, timeout: float = 240
) -> dict[str, Any]:
    """Wait until Kustomization `name` is Ready at commit `sha`; the object."""
    revision = f"main@sha1:{sha}"

    def probe() -> dict[str, Any] | None:
        obj = kube.get(KUSTOMIZATIONS, namespace, name)
        status = (obj or {}).get("status") or {}
        ok = ready_condition(obj).get("status") == "True"
        return obj if ok and status.get("lastAppliedRevision") == revision else None

    return wait_for(probe, timeout=timeout, interval=0.5, what=f"Kustomization {name} at {sha}")


def wait_handled(kube: k8s.BlockingKube, namespace: str, name: str, token: str) -> None:
    """Wait until Kustomization `name` has handled reconcile request `token`."""

    def probe() -> bool:
        obj = kube.get(KUSTOMIZATIONS, namespace, name) or {}
        return bool(obj.get("status", {}).get("lastHandledReconcileAt") == token)

    wait_for(probe, timeout=120, what=f"Kustomization {name} to handle the reconcile request")


def applied_changes(log: str, since: int) -> list[dict[str, Any]]:
    """kustomize-controller's per-object outcomes ("configured", "unchanged", ...) of the
    server-side applies it logged after byte `since` of its log."""
    out = []
    for line in log[since:].splitlines():
        if not line.startswith("{"):
            continue
        entry = yaml.safe_load(line)
        if isinstance(entry, dict) and isinstance(entry.get("output"), dict):
            out.append(entry["output"])
    return out
