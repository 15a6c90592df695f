"""The chart as rendered by helm: lint, each value set, the values schema, CRDs = crds/.

No cluster needed: these tests read what `helm lint` and `helm template` produce.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from marketplace_operator import metrics
from marketplace_operator.policy import metrics as policy_metrics
from marketplace_operator.settings import Settings
from prometheus_client import CollectorRegistry

from .conftest import CHART, ROOT, VALUE_SETS, Helm, run

KEEP = "helm.sh/resource-policy"
ARGO = "argocd.argoproj.io/sync-options"


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (obj,) = by_kind(objs, kind)
    return obj


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_lint_is_clean(helm: Helm, name: str) -> None:
    out = helm("lint", str(CHART), "--strict", values=VALUE_SETS[name]).stdout
    assert "[WARNING]" not in out, out
    assert "[ERROR]" not in out, out


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_object_is_labelled_and_namespaced_where_it_should(helm: Helm, name: str) -> None:
    objs = helm.template(VALUE_SETS[name])
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "ClusterKopfPeering",
    }
    for obj in objs:
        meta = obj["metadata"]
        if obj["kind"] == "CustomResourceDefinition":
            continue  # byte-for-byte crds/, checked below
        assert meta["labels"]["app.kubernetes.io/instance"] == "mpo", obj["kind"]
        assert ("namespace" in meta) == (obj["kind"] not in cluster_scoped), obj["kind"]


def test_default_is_one_standalone_replica_watching_every_namespace(helm: Helm) -> None:
    objs = helm.template({})
    deploy = one(objs, "Deployment")
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"]["type"] == "Recreate"  # never two active operators
    env = env_of(deploy)
    assert env["MARKETPLACE_OPERATOR_ALL_NAMESPACES"] == "true"
    assert env["MARKETPLACE_OPERATOR_STANDALONE"] == "true"
    assert not by_kind(objs, "PodDisruptionBudget")
    assert not by_kind(objs, "Role")
    assert {r["metadata"]["name"] for r in by_kind(objs, "ClusterRole")} == {
        "mpo-marketplace-operator",
        "mpo-marketplace-operator-cluster",
    }


def test_joined_gate_values_reach_the_operator_settings(helm: Helm) -> None:
    env = env_of(one(helm.template({}), "Deployment"))
    defaults = Settings()
    assert int(env["MARKETPLACE_OPERATOR_GATE_POLL_FAILURES"]) == defaults.gate_poll_failures
    assert float(env["MARKETPLACE_OPERATOR_GATE_SILENCE_SECONDS"]) == defaults.gate_silence_seconds
    gate = {"pollFailures": 5, "silenceSeconds": 42.5}
    env = env_of(one(helm.template({"operator": {"joinedGate": gate}}), "Deployment"))
    settings = Settings.model_validate(
        {
            "gate_poll_failures": env["MARKETPLACE_OPERATOR_GATE_POLL_FAILURES"],
            "gate_silence_seconds": env["MARKETPLACE_OPERATOR_GATE_SILENCE_SECONDS"],
        }
    )
    assert (settings.gate_poll_failures, settings.gate_silence_seconds) == (5, 42.5)


def test_pod_runs_restricted(helm: Helm) -> None:
    pod = one(helm.template({}), "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    env = env_of(one(helm.template({}), "Deployment"))
    # kopf's liveness endpoint listens where the probe knocks: the pod IP.
    assert env["MARKETPLACE_OPERATOR_LIVENESS_ENDPOINT"] == "http://$(POD_IP):8080/healthz"


def test_ha_runs_two_peered_replicas_with_a_pdb(helm: Helm) -> None:
    objs = helm.template(VALUE_SETS["ha"])
    deploy = one(objs, "Deployment")
    assert deploy["spec"]["replicas"] == 2
    assert env_of(deploy)["MARKETPLACE_OPERATOR_STANDALONE"] == "false"
    assert one(objs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert one(objs, "ClusterKopfPeering")["metadata"]["name"] == "marketplace-operator"
    cluster_rules = [r for cr in by_kind(objs, "ClusterRole") for r in cr["rules"]]
    assert {
        "apiGroups": ["kopf.dev"],
        "resources": ["clusterkopfpeerings"],
        "verbs": ["list", "watch", "patch"],
    } in cluster_rules
    affinity = deploy["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    # the peering CRDs ship in Helm's crds/ folder so the peering object can install with them
    crds = by_kind(helm.template(VALUE_SETS["ha"], include_crds=True), "CustomResourceDefinition")
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= {
        c["metadata"]["name"] for c in crds
    }


def test_namespaced_scope_grants_nothing_namespaced_cluster_wide(helm: Helm) -> None:
    objs = helm.template(VALUE_SETS["namespaced"])
    roles = by_kind(objs, "Role")
    bindings = by_kind(objs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["fleet-a", "fleet-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["fleet-a", "fleet-b"]
    for binding in bindings:
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": "mpo-marketplace-operator",
                "namespace": "marketplace-system",
            }
        ]
    (cluster_role,) = by_kind(objs, "ClusterRole")
    granted = {res for rule in cluster_role["rules"] for res in rule["resources"]}
    assert granted == {"customresourcedefinitions", "storageclasses", "nodes"}
    for rule in cluster_role["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
    env = env_of(one(objs, "Deployment"))
    assert json.loads(env["MARKETPLACE_OPERATOR_NAMESPACES"]) == ["fleet-a", "fleet-b"]
    assert "MARKETPLACE_OPERATOR_ALL_NAMESPACES" not in env


def test_namespaced_scope_defaults_to_the_release_namespace(helm: Helm) -> None:
    objs = helm.template({"scope": "namespaced"}, namespace="fleets")
    assert [r["metadata"]["namespace"] for r in by_kind(objs, "Role")] == ["fleets"]


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_no_wildcards_and_no_secret_listing_beyond_what_is_used(helm: Helm, name: str) -> None:
    objs = helm.template(VALUE_SETS[name])
    for role in by_kind(objs, "Role") + by_kind(objs, "ClusterRole"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
            if "secrets" in rule["resources"]:
                assert "deletecollection" not in rule["verbs"]
                assert "escalate" not in rule["verbs"]


def test_monitoring_objects(helm: Helm) -> None:
    objs = helm.template(VALUE_SETS["monitoring"])
    service = one(objs, "Service")
    monitor = one(objs, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert one(objs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["port"] == "private"
    alerts = {r["alert"] for g in one(objs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]}
    assert alerts == {
        "MarketplaceOperatorDown",
        "MarketplacePolicyPropagationSlow",
        "MarketplaceRolloutStuck",
        "MarketplaceNodeDegraded",
        "MarketplacePackagesUnderReplicated",
    }
    dashboard = one(objs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    (content,) = dashboard["data"].values()
    assert json.loads(content)["panels"]
    (policy,) = by_kind(objs, "NetworkPolicy")
    assert policy["metadata"]["namespace"] == "fleet-a"
    public, private = policy["spec"]["ingress"]
    assert [p["port"] for p in public["ports"]] == [7070]
    assert [p["port"] for p in private["ports"]] == [9070]
    operator = public["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
    assert operator == "marketplace-operator"
    assert public["from"][1]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == (
        "marketplace-node"
    )  # the fleet's peers
    # the private port: only the operator and Prometheus, never the nodes' peers
    names = [s["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for s in private["from"]]
    assert names == ["marketplace-operator", "prometheus"]


def _exported_metric_names() -> set[str]:
    """Every series name the operator exports, from its own metrics module."""
    registry = CollectorRegistry()
    metrics.Metrics(registry, phases=dict)
    policy_metrics.PolicyMetrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def test_alerts_and_dashboard_use_metrics_the_operator_exports(helm: Helm) -> None:
    objs = helm.template(VALUE_SETS["monitoring"])
    rules = yaml.safe_dump(one(objs, "PrometheusRule")["spec"])
    dashboard = next(iter(one(objs, "ConfigMap")["data"].values()))
    used = set(re.findall(r"\bmarketplace_operator_[a-z_]+", rules + dashboard))
    assert used, "no operator metric referenced"
    missing = used - _exported_metric_names()
    assert not missing, f"referenced but not exported by marketplace_operator.metrics: {missing}"


def test_chart_crds_are_crds_dir_plus_keep(helm: Helm) -> None:
    assert (
        run(
            [sys.executable, str(ROOT / "hack" / "sync_chart_crds.py"), "--check"], check=False
        ).returncode
        == 0
    ), "run: python hack/sync_chart_crds.py"
    rendered = {
        c["metadata"]["name"]: c for c in by_kind(helm.template({}), "CustomResourceDefinition")
    }
    sources = [
        path
        for path in sorted((ROOT / "crds").glob("*.yaml"))
        if next(yaml.safe_load_all(path.read_text()))["spec"]["group"] != "kopf.dev"  # Helm crds/
    ]
    assert sources
    assert len(rendered) == len(sources)
    for path in sources:
        crd = yaml.safe_load(path.read_text())
        got = rendered[crd["metadata"]["name"]]
        assert got["metadata"]["annotations"].pop(KEEP) == "keep"
        assert got["metadata"]["annotations"].pop(ARGO) == "Prune=false,Delete=false"
        if not got["metadata"]["annotations"]:
            del got["metadata"]["annotations"]
        assert got == crd, path.name
    assert not by_kind(helm.template({"crds": {"install": False}}), "CustomResourceDefinition")


def test_sync_check_notices_a_stale_chart(tmp_path: Path) -> None:
    target = CHART / "templates" / "crds"
    victim = sorted(target.glob("*.yaml"))[0]
    original = victim.read_text()
    try:
        victim.write_text(original.replace("keep", "delete"))
        done = run(
            [sys.executable, str(ROOT / "hack" / "sync_chart_crds.py"), "--check"], check=False
        )
        assert done.returncode == 1
        assert victim.name in done.stderr
    finally:
        victim.write_text(original)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"scope": "everywhere"}, 'scope must be one of the following: "cluster", "namespaced"'),
        (
            {"ha": {"enabled": True, "replicas": 1}},
            "ha.replicas: Must be greater than or equal to 2",
        ),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces.0: Does not match pattern"),
        ({"operator": {"metricsPort": 70000}}, "operator.metricsPort: Must be less than or equal"),
        (
            {"operator": {"joinedGate": {"pollFailures": 0, "silenceSeconds": 15}}},
            "operator.joinedGate.pollFailures: Must be greater than or equal to 1",
        ),
        ({"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy must be one of the following"),
        ({"replicaCount": 3}, "Additional property replicaCount is not allowed"),
        (
            {"monitoring": {"prometheusRule": {"rolloutStuckFor": "fifteen minutes"}}},
            "monitoring.prometheusRule.rolloutStuckFor: Does not match pattern",
        ),
        (
            {"networkPolicy": {"enabled": True}},
            "networkPolicy.namespaces: Array must have at least 1",
        ),
    ],
)
def test_schema_rejects_bad_values_with_a_clear_message(
    helm: Helm, values: dict[str, Any], message: str
) -> None:
    done = helm("template", "mpo", str(CHART), values=values, check=False)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert message in done.stderr, done.stderr


def _gitops(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "docs" / "gitops" / name).read_text()) if d]


def test_gitops_examples_point_at_the_chart_with_valid_values(helm: Helm) -> None:
    (operator_app, fleet_app) = _gitops("argocd-application.yaml")
    source = operator_app["spec"]["source"]
    assert (ROOT / source["path"] / "Chart.yaml").is_file()
    assert (ROOT / fleet_app["spec"]["source"]["path"]).is_dir()
    assert "ServerSideApply=true" in operator_app["spec"]["syncPolicy"]["syncOptions"]
    argo_objs = helm.template(source["helm"]["valuesObject"])
    assert one(argo_objs, "Deployment")["spec"]["replicas"] == 2

    (release,) = [d for d in _gitops("flux-helmrelease.yaml") if d["kind"] == "HelmRelease"]
    chart = release["spec"]["chart"]["spec"]["chart"]
    assert (ROOT / chart / "Chart.yaml").is_file()
    flux_objs = helm.template(release["spec"]["values"])
    assert one(flux_objs, "PrometheusRule")

    (health,) = _gitops("argocd-health.yaml")
    kinds = {key.rsplit("_", 1)[1] for key in health["data"]}
    served = {
        crd["spec"]["names"]["kind"]
        for crd in by_kind(helm.template({}), "CustomResourceDefinition")
        if crd["spec"]["group"] == "marketplace.p2p.dev"
    }
    assert kinds <= served
