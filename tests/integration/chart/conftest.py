"""Fixtures for the Helm chart: helm itself, rendering, and a private cluster.

The install/upgrade/uninstall tests own cluster-scoped objects (the CRDs
become Helm-owned, a CRD gains a field, leftovers are counted), so they run on
a cluster of their own: `hack/cluster.sh up` with its own state directory,
ports and pod range, stopped at the end of the session. Set
CHART_TEST_KUBECONFIG to use another disposable cluster (kind) instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.net import free_ports
from tests.support.private_cluster import PORTS, private_cluster_env

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "marketplace-operator"

# The value sets every render and dry-run test covers.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "ha": {"ha": {"enabled": True}},
    "namespaced": {"scope": "namespaced", "watchNamespaces": ["fleet-a", "fleet-b"]},
    "monitoring": {
        "monitoring": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        },
        "networkPolicy": {"enabled": True, "namespaces": ["fleet-a"]},
    },
}


def run(
    argv: list[str],
    *,
    env: Mapping[str, str] | None = None,
    inherit: bool = True,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a command, failing the test with its stderr when it fails and `check` is set;
    `env` adds to ours, or (`inherit=False`) is the whole environment."""
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**(os.environ if inherit else {}), **(env or {})},
        check=False,
    )
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}{done.stdout}")
    return done


def docs(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a multi-document stream."""
    return [d for d in yaml.safe_load_all(text) if d]


@dataclass(frozen=True)
class Helm:
    """helm with a values file written per call, optionally against a cluster."""

    binary: Path
    workdir: Path
    kubeconfig: Path | None = None

    def __call__(
        self, *args: str, values: Mapping[str, Any] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), *args]
        if values is not None:
            digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]
            path = self.workdir / f"values-{digest}.yaml"
            path.write_text(yaml.safe_dump(dict(values)))
            argv += ["--values", str(path)]
        env = {
            "HELM_CACHE_HOME": str(self.workdir / "cache"),
            "HELM_CONFIG_HOME": str(self.workdir / "config"),
            "HELM_DATA_HOME": str(self.workdir / "data"),
        }
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return run(argv, env=env, check=check)

    def template(
        self,
        values: Mapping[str, Any],
        *,
        chart: Path = CHART,
        namespace: str = "marketplace-system",
        release: str = "mpo",
        include_crds: bool = False,
    ) -> list[dict[str, Any]]:
        extra = ["--include-crds"] if include_crds else []
        out = self("template", release, str(chart), "--namespace", namespace, *extra, values=values)
        return docs(out.stdout)


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    return Path(run([str(ROOT / "hack" / "helm.sh")]).stdout.strip())


@pytest.fixture(scope="session")
def helm(helm_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(binary=helm_binary, workdir=tmp_path_factory.mktemp("helm"))


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    kubectl: Path

    def kubectl_run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args]
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=120, check=False
        )
        if check and done.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return done

    def get(self, *args: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.kubectl_run("get", *args, "-o", "json").stdout)
        return out


@pytest.fixture(scope="session")
def chart_cluster() -> Iterator[Cluster]:
    """A disposable cluster for the chart: CHART_TEST_KUBECONFIG, else a private local one."""
    given = os.environ.get("CHART_TEST_KUBECONFIG")
    if given:
        yield Cluster(Path(given), Path(os.environ.get("KUBECTL", "kubectl")))
        return
    # Not under /tmp: a pod that mounts an emptyDir at /tmp (the operator's does)
    # would hide the kubelet's volume sources beneath it from its own bind mounts.
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    state = cache / "marketplace-fleet" / "chart-test-clusters" / uuid.uuid4().hex[:8]
    state.mkdir(parents=True)
    ports = dict(zip(PORTS, free_ports(len(PORTS)), strict=True))
    env = private_cluster_env(state, ports, node_name="chart-node")
    script = str(ROOT / "hack" / "cluster.sh")
    try:
        run([script, "up"], env=env, inherit=False, timeout=300)
        yield Cluster(state / "kubeconfig", state / "bin" / "kubectl")
    finally:
        run([script, "down"], env=env, inherit=False, check=False, timeout=240)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster_helm(helm: Helm, chart_cluster: Cluster) -> Helm:
    return Helm(binary=helm.binary, workdir=helm.workdir, kubeconfig=chart_cluster.kubeconfig)
