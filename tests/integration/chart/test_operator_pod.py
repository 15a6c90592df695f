"""The operator installed by the chart runs as a pod under the local kubelet, with the
ServiceAccount token and the RBAC the chart grants, and reconciles a MarketplaceNode
to Ready without a single forbidden request."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml

from .conftest import CHART, Cluster, Helm

pytestmark = pytest.mark.cluster

RELEASE, NAMESPACE, FLEET_NS = "mpo-run", "mp-run", "fleet-run"
DEPLOYMENT = f"{RELEASE}-marketplace-operator"
# The local kubelet runs any …/marketplace-fleet/<name>:<tag> image from the
# checkout's virtualenv (docs/contracts.md); a real cluster pulls it.
IMAGES = "localhost/marketplace-fleet"


def _wait(cluster: Cluster, *, timeout: float, what: str, check: str) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        done = cluster.kubectl_run("get", *check.split(), check=False)
        last = done.stdout.strip() + done.stderr.strip()
        if last == "True":
            return
        time.sleep(1)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def operator(cluster_helm: Helm, chart_cluster: Cluster) -> Iterator[Cluster]:
    for ns in (NAMESPACE, FLEET_NS):
        chart_cluster.kubectl_run("create", "namespace", ns, check=False)
    cluster_helm(
        "install",
        RELEASE,
        str(CHART),
        "-n",
        NAMESPACE,
        "--take-ownership",
        values={
            "image": {"repository": f"{IMAGES}/operator", "tag": "dev"},
            "nodeImage": {"repository": f"{IMAGES}/node", "tag": "dev"},
            "scope": "namespaced",
            "watchNamespaces": [FLEET_NS],
        },
    )
    try:
        chart_cluster.kubectl_run(
            "rollout", "status", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE, "--timeout=120s"
        )
        yield chart_cluster
    finally:
        chart_cluster.kubectl_run(
            "delete", "marketplacenodes", "--all", "-n", FLEET_NS, "--timeout=60s", check=False
        )
        cluster_helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)


def test_operator_pod_runs_with_the_charts_service_account(operator: Cluster) -> None:
    (pod,) = operator.get("pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}")[
        "items"
    ]
    assert pod["spec"]["serviceAccountName"] == DEPLOYMENT
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "True"  # kopf's liveness endpoint answered the probes


def test_operator_pod_reconciles_a_node_to_ready_without_forbidden_calls(
    operator: Cluster,
) -> None:
    operator.kubectl_run(
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump(
            {
                "apiVersion": "marketplace.p2p.dev/v1alpha1",
                "kind": "MarketplaceNode",
                "metadata": {"name": "n1", "namespace": FLEET_NS},
                "spec": {},
            }
        ),
    )
    _wait(
        operator,
        timeout=120,
        what="MarketplaceNode n1 Ready",
        check=f"mnode n1 -n {FLEET_NS} -o jsonpath="
        '{.status.conditions[?(@.type=="Ready")].status}',
    )
    pod = operator.get("pod", "n1", "-n", FLEET_NS)
    assert pod["spec"]["containers"][0]["image"] == f"{IMAGES}/node:dev"  # the chart's default
    logs = operator.kubectl_run("logs", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE).stdout
    forbidden = [line for line in logs.splitlines() if "forbidden" in line.lower()]
    assert not forbidden, "\n".join(forbidden[:5])
