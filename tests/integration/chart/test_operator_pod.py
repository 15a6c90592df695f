"""The operator installed by the chart runs as a pod under the local kubelet, with the
ServiceAccount token and the RBAC the chart grants, and reconciles a MarketplaceNode
to Ready without a single forbidden request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from tests.support.poll import wait_for

from .conftest import CHART, ROOT, Cluster, Helm

pytestmark = pytest.mark.cluster

RELEASE, NAMESPACE, FLEET_NS = "mpo-run", "mp-run", "fleet-run"
DEPLOYMENT = f"{RELEASE}-marketplace-operator"
# The local kubelet runs any …/marketplace-fleet/<name>:<tag> image from the
# checkout's virtualenv (docs/contracts.md); a real cluster pulls it.
IMAGES = "localhost/marketplace-fleet"


def _wait(cluster: Cluster, *, timeout: float, what: str, check: str) -> None:
    """Until `kubectl get <check>` prints True."""

    def probe() -> str | None:
        done = cluster.kubectl_run("get", *check.split(), check=False)
        return "True" if done.stdout.strip() == "True" else None

    wait_for(probe, timeout=timeout, interval=1, what=what)


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


def _ready(cluster: Cluster, name: str, *, timeout: float = 150) -> None:
    _wait(
        cluster,
        timeout=timeout,
        what=f"MarketplaceNode {name} Ready",
        check=f"mnode {name} -n {FLEET_NS} -o jsonpath="
        '{.status.conditions[?(@.type=="Ready")].status}',
    )


def _pod_uid(cluster: Cluster, name: str) -> str:
    uid: str = cluster.get("pod", name, "-n", FLEET_NS)["metadata"]["uid"]
    return uid


def test_operator_pod_runs_a_fleet_through_its_life_without_forbidden_calls(
    operator: Cluster,
) -> None:
    """Create, policy, rolling restart and deletion: every API call the operator makes
    in a fleet's life, made with the chart's RBAC; none may be refused."""
    operator.kubectl_run("apply", "-n", FLEET_NS, "-f", str(ROOT / "examples" / "fleet.yaml"))
    for name in ("market-a", "market-b", "market-c"):
        _ready(operator, name)
    # GitOps: the user's manifests, applied again or diffed, show no drift once reconciled
    fleet = str(ROOT / "examples" / "fleet.yaml")
    drift = operator.kubectl_run("diff", "-n", FLEET_NS, "-f", fleet, check=False)
    assert drift.returncode == 0, drift.stdout + drift.stderr
    again = operator.kubectl_run("apply", "-n", FLEET_NS, "-f", fleet).stdout
    assert again.count("unchanged") == 3, again
    # the per-fleet objects the operator creates, not only the nodes' children
    assert operator.get("marketplacefleets", "-n", FLEET_NS)["items"]
    assert operator.get("poddisruptionbudgets", "-n", FLEET_NS)["items"]
    pod = operator.get("pod", "market-a", "-n", FLEET_NS)
    assert pod["spec"]["containers"][0]["image"] == f"{IMAGES}/node:dev"  # the chart's default

    policies = [
        {
            "apiVersion": "marketplace.p2p.dev/v1alpha1",
            "kind": "BanList",
            "metadata": {"name": "spammers", "namespace": FLEET_NS},
            "spec": {"fleet": "demo", "entries": [{"cidr": "203.0.113.0/24", "reason": "spam"}]},
        },
        {
            "apiVersion": "marketplace.p2p.dev/v1alpha1",
            "kind": "RateLimitPolicy",
            "metadata": {"name": "strict", "namespace": FLEET_NS},
            "spec": {"fleet": "demo", "perPeer": {"search": {"rate": 5, "burst": 10}}},
        },
    ]
    operator.kubectl_run("apply", "-f", "-", stdin=yaml.safe_dump_all(policies))
    for kind, name in (("banlist", "spammers"), ("ratelimitpolicy", "strict")):
        _wait(
            operator,
            timeout=60,
            what=f"{kind} {name} converged on the fleet",
            check=f"{kind} {name} -n {FLEET_NS} -o jsonpath="
            '{.status.conditions[?(@.type=="PolicyConverged")].status}',
        )

    before = _pod_uid(operator, "market-b")
    operator.kubectl_run(
        "annotate",
        "--overwrite",
        "-n",
        FLEET_NS,
        "mnode/market-b",
        "marketplace.p2p.dev/restartedAt=chart-test",
    )
    wait_for(
        lambda: _pod_uid_or_none(operator, "market-b") not in (before, None),
        timeout=150,
        interval=1,
        what="market-b's pod to be replaced after the restart request",
    )
    _ready(operator, "market-b")

    operator.kubectl_run("delete", "mnode", "market-c", "-n", FLEET_NS, "--timeout=90s")
    # The fleet's last node deletes the fleet's shared objects before its finalizer goes;
    # refused, kopf retried every 60 s and the deletion never completed.
    operator.kubectl_run("delete", "mnode", "--all", "-n", FLEET_NS, "--timeout=90s")
    shared = operator.kubectl_run(
        "get", "configmap/demo-policy", "secret/demo-admin", "-n", FLEET_NS,
        "--ignore-not-found", "-o", "name",
    ).stdout  # fmt: skip
    assert not shared.strip(), shared

    logs = operator.kubectl_run("logs", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE).stdout
    forbidden = [line for line in logs.splitlines() if "forbidden" in line.lower()]
    assert not forbidden, "\n".join(forbidden[:5])


def _pod_uid_or_none(cluster: Cluster, name: str) -> str | None:
    done = cluster.kubectl_run(
        "get", "pod", name, "-n", FLEET_NS, "-o", "jsonpath={.metadata.uid}", check=False
    )
    return done.stdout.strip() or None


HA_RELEASE, HA_NAMESPACE, HA_FLEET_NS = "mpo-ha", "mp-ha", "fleet-ha"


def _peers(cluster: Cluster) -> list[str]:
    """Replica pod names in the KopfPeering, highest priority (the active one) first."""
    peering = cluster.get("kopfpeering", "marketplace-operator", "-n", HA_FLEET_NS)
    status: dict[str, dict[str, int]] = peering.get("status") or {}
    return [name for name, _ in sorted(status.items(), key=lambda kv: -kv[1]["priority"])]


def _mentions(cluster: Cluster, pod: str, text: str) -> int:
    logs = cluster.kubectl_run("logs", pod, "-n", HA_NAMESPACE).stdout
    return sum(text in line for line in logs.splitlines() if "aiohttp.access" not in line)


def _node(cluster: Cluster, name: str) -> None:
    cluster.kubectl_run(
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump(
            {
                "apiVersion": "marketplace.p2p.dev/v1alpha1",
                "kind": "MarketplaceNode",
                "metadata": {"name": name, "namespace": HA_FLEET_NS},
                "spec": {},
            }
        ),
    )
    _wait(
        cluster,
        timeout=120,
        what=f"MarketplaceNode {name} Ready",
        check=f"mnode {name} -n {HA_FLEET_NS} -o jsonpath="
        '{.status.conditions[?(@.type=="Ready")].status}',
    )


def test_ha_one_replica_acts_and_the_standby_takes_over(
    cluster_helm: Helm, chart_cluster: Cluster
) -> None:
    for ns in (HA_NAMESPACE, HA_FLEET_NS):
        chart_cluster.kubectl_run("create", "namespace", ns, check=False)
    cluster_helm(
        "install",
        HA_RELEASE,
        str(CHART),
        "-n",
        HA_NAMESPACE,
        "--take-ownership",
        "--wait",
        values={
            "image": {"repository": f"{IMAGES}/operator", "tag": "dev"},
            "nodeImage": {"repository": f"{IMAGES}/node", "tag": "dev"},
            "ha": {"enabled": True},
            "scope": "namespaced",
            "watchNamespaces": [HA_FLEET_NS],
        },
    )
    try:

        def both_joined() -> list[str] | None:
            peers = _peers(chart_cluster)
            return peers if len(peers) >= 2 else None

        peers = wait_for(
            both_joined, timeout=60, interval=1, what="both replicas to join the peering"
        )
        active, standby = peers[:2]
        _node(chart_cluster, "before")
        assert _mentions(chart_cluster, active, "before") > 0
        assert _mentions(chart_cluster, standby, "before") == 0  # standing by, not acting

        chart_cluster.kubectl_run("delete", "pod", active, "-n", HA_NAMESPACE, "--wait=true")
        _node(chart_cluster, "after")
        assert _mentions(chart_cluster, standby, "after") > 0  # took over
    finally:
        chart_cluster.kubectl_run(
            "delete", "marketplacenodes", "--all", "-n", HA_FLEET_NS, "--timeout=60s", check=False
        )
        cluster_helm("uninstall", HA_RELEASE, "-n", HA_NAMESPACE, "--wait", check=False)
