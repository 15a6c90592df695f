"""Shared end-to-end fixtures: a cluster, the CRDs, a namespace per test, the operator.

Reusable by every operator test (core, policy, rollout):

- `kubeconfig` / `kube` / `kubectl`: the cluster in $KUBECONFIG, else the local one
  (`hack/cluster.sh up`, idempotent);
- `crds`: every CRD in crds/ applied and Established;
- `namespace`: a fresh namespace per test, torn down without leaving stuck finalizers
  (`other_namespace`: a second one);
- `operator`: an `OperatorProcess` (the real `marketplace-operator` console script) watching
  that namespace, with `start()`, `stop()`, `kill()` (SIGKILL) and `restart()`;
- `wait_for(...)`: poll a predicate with a deadline, failing with what was last seen;
- `mnode_body(...)`, `mnode_ready(...)`, `condition(...)`: MarketplaceNode helpers.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import real_node
from e2e_helpers import ROOT, VENV_BIN, Kubectl, OperatorProcess, Plugin, wait_for
from marketplace_node import authors
from marketplace_operator import errors, k8s
from marketplace_protocol import identity

pytestmark = pytest.mark.cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"]
    subprocess.run([str(ROOT / "hack" / "cluster.sh"), "up"], check=True, timeout=600)
    out = subprocess.run(
        [str(ROOT / "hack" / "cluster.sh"), "kubeconfig"],
        check=True, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return out.stdout.strip()


@pytest.fixture(scope="session")
def kube(kubeconfig: str) -> Iterator[k8s.BlockingKube]:
    client = k8s.BlockingKube.from_environment(kubeconfig=kubeconfig)
    yield client
    client.close()


def _kubectl_path(kubeconfig: str) -> str:
    local = Path(kubeconfig).parent / "bin" / "kubectl"
    return str(local) if local.exists() else "kubectl"


@pytest.fixture(scope="session")
def kubectl(kubeconfig: str) -> Kubectl:
    """`kubectl(*args, input=None, check=True)`: run kubectl against the test cluster."""
    binary = _kubectl_path(kubeconfig)

    def run(
        *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, "--kubeconfig", kubeconfig, *args],
            input=input, capture_output=True, text=True, timeout=120, check=check,
        )  # fmt: skip

    return run


@pytest.fixture(scope="session")
def crds(kubectl: Kubectl) -> list[str]:
    files = sorted((ROOT / "crds").glob("*.yaml"))
    names = []
    for f in files:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
        names += kubectl("get", "-f", str(f), "-o", "name").stdout.split()
    for name in names:
        kubectl("wait", "--for=condition=Established", name, "--timeout=60s")

    # Established is not served yet: on a fresh API server a new kind's storage answers 503
    # "storage is (re)initializing" for a moment after (a fresh test-netns cluster hit it).
    def served(plural: str) -> Callable[[], bool]:
        return lambda: kubectl("get", plural, "-A", check=False).returncode == 0

    for name in names:
        plural = name.split("/", 1)[1]
        wait_for(served(plural), timeout=60, what=f"{plural} served")
    return names


@contextlib.contextmanager
def _fresh_namespace(kube: k8s.BlockingKube, kubectl: Kubectl, name: str) -> Iterator[str]:
    kubectl("create", "namespace", name)
    if real_node.ON_REAL_NODE:
        real_node.place_pods(kubectl, name)
    yield name
    # With the operator gone, MarketplaceNode (and MarketplaceFleet) finalizers would hold
    # the namespace forever.
    for resource in (k8s.MNODES, k8s.FLEETS):
        for obj in kube.list(resource, name):
            with contextlib.suppress(errors.NotFound):
                kube.patch(
                    resource, name, obj["metadata"]["name"], {"metadata": {"finalizers": None}}
                )
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(
    kube: k8s.BlockingKube, kubectl: Kubectl, crds: list[str], request: pytest.FixtureRequest
) -> Iterator[str]:
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))[:40]
    base = base.strip("-")
    with _fresh_namespace(kube, kubectl, f"e2e-{base}-{uuid.uuid4().hex[:5]}") as name:
        yield name


@pytest.fixture
def other_namespace(namespace: str, kube: k8s.BlockingKube, kubectl: Kubectl) -> Iterator[str]:
    """A second fresh namespace, for tests that span two (watch it: `--namespace` to the
    operator factory)."""
    with _fresh_namespace(kube, kubectl, f"{namespace[:50]}-other") as name:
        yield name


@pytest.fixture
def operator_factory(
    kubeconfig: str, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Make (unstarted) operator processes for this test's namespace; all stopped at teardown."""
    made: list[OperatorProcess] = []

    def make(*extra: str) -> OperatorProcess:
        if real_node.ON_REAL_NODE:
            extra = ("--default-node-image", real_node.up().node, *extra)
        op = OperatorProcess(
            kubeconfig=kubeconfig,
            namespace=namespace,
            log_dir=tmp_path,
            extra=list(extra),
            name=f"operator{len(made)}",
        )
        made.append(op)
        return op

    yield make
    for op in made:
        op.stop()


@pytest.fixture
def operator(operator_factory: Callable[..., OperatorProcess]) -> OperatorProcess:
    """One running operator watching `namespace`."""
    op = operator_factory()
    op.start()
    return op


@pytest.fixture
def plugin(kubeconfig: str, namespace: str, tmp_path: Path) -> Plugin:
    """`kubectl marketplace ARGS -n <test namespace>` through the real kubectl binary."""
    kubectl = _kubectl_path(kubeconfig)
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("KUBECONFIG", None)  # the flag below must be what the plugin reads
    author_key = tmp_path / "author.pem"  # the publisher's own key (docs/packages.md)
    identity.load_or_create(author_key)
    env[authors.KEY_ENV] = str(author_key)

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [kubectl, "marketplace", *args, "--kubeconfig", kubeconfig, "-n", namespace],
            capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path, check=False,
        )  # fmt: skip

    return run
