"""A fleet in git, for real: Flux's own source-controller and kustomize-controller install
the operator (our chart, rendered) and a fleet from a git repository served over HTTP, with
kstatus health on our conditions (tests/e2e/gitops.py); then a real Prometheus scrapes it
(tests/e2e/prometheus.py).

The tests run in order on one fleet (module fixture `gitops_fleet`): Ready with no drift, a
BanList commit, a chart upgrade commit, a MarketplaceNode deleted from git, then every query
of the chart's Grafana dashboard answered by Prometheus.
"""

from __future__ import annotations

import datetime
import math
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import gitops
import prometheus
import pytest
from e2e_helpers import Kubectl, condition, mnode_ready, wait_for, wait_ready
from gitops import FIRST_BANNED, NODES, Fleet, banlist_file
from marketplace_operator import k8s
from marketplace_operator.handlers.policy import BANLISTS
from marketplace_protocol.identity import Identity
from peer_helpers import banned, peer_request

from tests.support.monitors import scrape_configs

pytestmark = pytest.mark.timeout(600)  # the first test also waits for Flux to install it all


@pytest.fixture(scope="module")
def gitops_fleet(
    kubeconfig: str,
    kube: k8s.BlockingKube,
    kubectl: Kubectl,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    """One fleet Flux installs from git for the whole module, torn down after it."""
    with gitops.gitops_fleet(kubeconfig, kube, kubectl, tmp_path_factory.mktemp("flux")) as fleet:
        yield fleet


def test_flux_reports_ready_and_nothing_drifts(
    gitops_fleet: Fleet, kube: k8s.BlockingKube, kubectl: Kubectl
) -> None:
    revision = f"main@sha1:{gitops_fleet.head}"
    source = kube.get(gitops.GIT_REPOSITORIES, gitops_fleet.namespace, "fleet") or {}
    assert gitops.ready_condition(source)["status"] == "True"
    assert source["status"]["artifact"]["revision"] == revision
    assert gitops_fleet.server.requests > 0  # cloned over HTTP from our server
    for name in ("operator", "fleet"):
        obj = kube.get(gitops.KUSTOMIZATIONS, gitops_fleet.namespace, name) or {}
        ready = gitops.ready_condition(obj)
        assert (ready["status"], ready["reason"]) == ("True", "ReconciliationSucceeded"), ready
        assert ready["message"] == f"Applied revision: {revision}"
    for name in NODES:  # kstatus waited for our Ready condition at the current generation
        assert mnode_ready(kube, gitops_fleet.namespace, name), name

    # No drift: what git says, applied again as Flux applies it, changes nothing ...
    for name in ("operator", "fleet"):
        manifests = gitops.as_flux_applies(kubectl, gitops_fleet, name)
        diff = kubectl(
            "diff", "--server-side", f"--field-manager={gitops.FIELD_MANAGER}", "-f", "-",
            input=manifests, check=False,
        )  # fmt: skip
        assert diff.returncode == 0, diff.stdout + diff.stderr
    # ... and a forced reconcile of both Kustomizations reports every object unchanged.
    log_start = len(gitops_fleet.flux.log("kustomize-controller"))
    now = datetime.datetime.now(datetime.UTC).isoformat()
    for name in ("operator", "fleet"):
        kube.patch(
            gitops.KUSTOMIZATIONS, gitops_fleet.namespace, name,
            {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": now}}},
        )  # fmt: skip
        gitops.wait_handled(kube, gitops_fleet.namespace, name, now)
    outcomes = gitops.applied_changes(gitops_fleet.flux.log("kustomize-controller"), log_start)
    assert outcomes, gitops_fleet.flux.log("kustomize-controller")[log_start:][-3000:]
    changed = {k: v for out in outcomes for k, v in out.items() if v != "unchanged"}
    assert not changed


def test_a_banlist_commit_reaches_every_node(gitops_fleet: Fleet, kube: k8s.BlockingKube) -> None:
    peer = Identity.generate()
    sha = gitops_fleet.repo.commit(
        banlist_file(gitops_fleet.namespace, [FIRST_BANNED, peer.peer_id]), "ban a peer"
    )
    gitops.applied(kube, gitops_fleet.namespace, "fleet", sha)
    # Flux reported Ready only once kstatus saw the BanList converged on every node:
    banlist = kube.get(BANLISTS, gitops_fleet.namespace, "abusers") or {}
    assert banlist["status"]["entries"] == 2
    live = [n for n in NODES if kube.get(k8s.MNODES, gitops_fleet.namespace, n)]
    assert banlist["status"]["convergedNodes"] == f"{len(live)}/{len(live)}"
    want = banlist["status"]["fleetPolicyVersion"]
    for name in live:
        node = kube.get(k8s.MNODES, gitops_fleet.namespace, name) or {}
        assert node["status"]["policyVersion"] >= want, name
        # and each node enforces it: a signed request from that peer is refused
        assert banned(*peer_request(node["status"]["podIP"], peer)), name
    gitops_fleet.head = sha


def _operator_pods(kube: k8s.BlockingKube, fleet: Fleet) -> dict[str, dict[str, object]]:
    pods = kube.list(
        k8s.PODS,
        fleet.namespace,
        labels={"app.kubernetes.io/instance": fleet.release},
    )
    return {p["metadata"]["uid"]: p for p in pods if not p["metadata"].get("deletionTimestamp")}


def test_a_chart_upgrade_commit_rolls_out(gitops_fleet: Fleet, kube: k8s.BlockingKube) -> None:
    before = _operator_pods(kube, gitops_fleet)
    assert len(before) == 1
    sha = gitops_fleet.repo.commit(
        gitops.operator_dir(gitops_fleet.release, gitops_fleet.namespace, log_level="DEBUG"),
        "upgrade the operator: log level DEBUG",
    )
    gitops.applied(kube, gitops_fleet.namespace, "operator", sha)
    name = f"{gitops_fleet.release}-marketplace-operator"  # the chart's fullname
    deployment = kube.get(gitops.DEPLOYMENTS, gitops_fleet.namespace, name) or {}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env["MARKETPLACE_OPERATOR_LOG_LEVEL"] == "DEBUG"
    # kstatus waited for the rollout: the new pod serves, the old one is gone
    after = _operator_pods(kube, gitops_fleet)
    assert after
    assert not set(after) & set(before), (before.keys(), after.keys())
    for pod in after.values():
        assert condition(pod, "Ready"), pod.get("status")
    gitops.applied(kube, gitops_fleet.namespace, "fleet", sha)  # the fleet stays Ready under it
    gitops_fleet.head = sha


def test_deleting_a_node_from_git_removes_it_cleanly(
    gitops_fleet: Fleet, kube: k8s.BlockingKube
) -> None:
    namespace, gone, rest = gitops_fleet.namespace, NODES[-1], NODES[:-1]
    selector = {"app.kubernetes.io/instance": gone}

    def children() -> list[str]:
        kinds = (k8s.PODS, k8s.SERVICES, k8s.PVCS, k8s.SECRETS, k8s.CONFIGMAPS)
        return [
            f"{res.plural}/{o['metadata']['name']}"
            for res in kinds
            for o in kube.list(res, namespace, labels=selector)
        ]

    before = children()
    assert f"pods/{gone}" in before, before
    assert f"services/{gone}" in before, before
    sha = gitops_fleet.repo.commit({f"fleet/{gone}.yaml": None}, f"remove {gone}")
    gitops.applied(kube, namespace, "fleet", sha)
    wait_for(
        lambda: kube.get(k8s.MNODES, namespace, gone) is None,
        timeout=90, what=f"MarketplaceNode {gone} deleted (the operator's finalizer ran)",
    )  # fmt: skip
    wait_for(lambda: not children(), timeout=90, what=f"no children of {gone} left")
    kustomization = kube.get(gitops.KUSTOMIZATIONS, namespace, "fleet") or {}
    inventory = [e["id"] for e in kustomization["status"]["inventory"]["entries"]]
    assert not [i for i in inventory if f"_{gone}_" in i], inventory
    wait_ready(kube, namespace, rest)  # the others stay Ready ...

    def peers() -> set[int]:
        return {(kube.get(k8s.MNODES, namespace, n) or {})["status"]["peers"] for n in rest}

    # ... and peer only with each other
    def forgotten() -> bool:
        seen = peers()
        assert seen <= {len(rest), len(rest) - 1}, seen  # never more, never none
        return seen == {len(rest) - 1}

    wait_for(forgotten, timeout=120, what=f"the peers to forget {gone} (peers {peers()})")


@pytest.fixture
def prom(
    gitops_fleet: Fleet, kube: k8s.BlockingKube, kubeconfig: str, tmp_path: Path
) -> Iterator[prometheus.Prometheus]:
    monitors = [
        d
        for d in prometheus.rendered_with_monitoring(gitops_fleet)
        if d["kind"] in ("ServiceMonitor", "PodMonitor")
    ]
    assert {m["kind"] for m in monitors} == {"ServiceMonitor", "PodMonitor"}
    services = kube.list(k8s.SERVICES, gitops_fleet.namespace)  # what the ServiceMonitor selects
    scrape = scrape_configs(monitors, services, kubeconfig=kubeconfig, interval="1s")
    config = {"global": {"scrape_interval": "1s"}, "scrape_configs": scrape}
    prom = prometheus.Prometheus(config, tmp_path)
    yield prom
    prom.stop()


def test_every_dashboard_query_returns_data(
    gitops_fleet: Fleet, kube: k8s.BlockingKube, prom: prometheus.Prometheus
) -> None:
    nodes = [n["metadata"]["name"] for n in kube.list(k8s.MNODES, gitops_fleet.namespace)]
    assert nodes

    def targets_up() -> dict[str, list[str]] | None:
        """Per scrape job, the pods scraped and up: the operator, then every node."""
        active = prom.api("targets", state="active")["activeTargets"]
        up: dict[str, list[str]] = {}
        for t in active:
            if t["health"] == "up":
                up.setdefault(t["scrapePool"].split("/")[0], []).append(t["labels"]["pod"])
        ok = len(up.get("serviceMonitor", [])) == 1 and sorted(up.get("podMonitor", [])) == sorted(
            nodes
        )
        return up if ok else None

    up = wait_for(targets_up, timeout=60, interval=1, what="the operator and every node up")
    assert up["serviceMonitor"][0].startswith(gitops_fleet.release)

    # Something for the rate panels to show: a policy change the operator pushes (by git).
    sha = gitops_fleet.repo.commit(
        banlist_file(gitops_fleet.namespace, [FIRST_BANNED, Identity.generate().peer_id]),
        "ban another peer",
    )
    gitops.applied(kube, gitops_fleet.namespace, "fleet", sha)

    jobs = prom.api("label/job/values", **{"match[]": "marketplace_operator_reconciliations_total"})
    # the dashboard's $job variable: the metrics Service the ServiceMonitor selects
    assert jobs == [f"{gitops_fleet.release}-marketplace-operator-metrics"]
    queries = prometheus.dashboard_queries(prometheus.rendered_with_monitoring(gitops_fleet))
    assert len(queries) >= 10
    # as Grafana expands a multi-value variable: a regex alternation, inside a PromQL string
    job = "|".join(re.escape(j) for j in jobs).replace("\\", "\\\\")

    def empty() -> list[str]:
        """The queries without a finite sample yet (Grafana would show 'No data')."""
        missing = []
        for query in queries:
            result = prom.api("query", query=query.replace("$job", job))["result"]
            if not any(math.isfinite(float(r["value"][1])) for r in result):
                missing.append(query)
        return missing

    deadline = time.monotonic() + 90
    while (missing := empty()) and time.monotonic() < deadline:
        time.sleep(1)
    assert not missing, f"no data for {missing}"
    # The nodes' own metrics are there too, one series per node.
    peers = prom.api("query", query="marketplace_node_peers")["result"]
    assert sorted(r["metric"]["pod"] for r in peers) == sorted(nodes)


def test_the_git_server_is_read_only(gitops_fleet: Fleet, tmp_path: Path) -> None:
    """Only Flux reads it; pushes go to the bare repository on disk."""
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "-q", f"{gitops_fleet.server.url}/fleet.git", str(clone)],
        check=True,
        timeout=60,
    )
    assert (clone / "operator" / "operator.yaml").exists()
    push = subprocess.run(
        ["git", "-C", str(clone), "push", "origin", "HEAD:refs/heads/other"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert push.returncode != 0
    assert "403" in push.stderr, push.stderr
