"""The chart against a real API server: dry-run of every value set, install, upgrade
of a CRD, uninstall leftovers, and the namespaced scope's Secret boundary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .conftest import CHART, ROOT, VALUE_SETS, Cluster, Helm, docs

pytestmark = pytest.mark.cluster

INSTANCE = "app.kubernetes.io/instance"
# Stand-ins for the Prometheus operator's CRDs, which no registry here serves:
# enough schema for the API server to check the kinds and top-level shape.
MONITORING_CRDS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: %(plural)s.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: %(kind)s, plural: %(plural)s}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [%(required)s]
              x-kubernetes-preserve-unknown-fields: true
"""


def apply(cluster: Cluster, manifests: str, *extra: str) -> str:
    return cluster.kubectl_run(
        "apply", "--server-side", "--field-manager=chart-test", "-f", "-", *extra, stdin=manifests
    ).stdout


@pytest.fixture(scope="module")
def prerequisites(chart_cluster: Cluster) -> Cluster:
    """Namespaces the value sets name; kopf peering and stand-in monitoring CRDs."""
    for ns in ("marketplace-system", "fleet-a", "fleet-b"):
        apply(
            chart_cluster,
            yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
    monitoring = [
        MONITORING_CRDS
        % {
            "kind": "ServiceMonitor",
            "plural": "servicemonitors",
            "required": "endpoints, selector",
        },
        MONITORING_CRDS
        % {
            "kind": "PodMonitor",
            "plural": "podmonitors",
            "required": "podMetricsEndpoints, selector",
        },
        MONITORING_CRDS
        % {"kind": "PrometheusRule", "plural": "prometheusrules", "required": "groups"},
    ]
    peering = (CHART / "crds" / "kopf-peering.yaml").read_text()
    apply(chart_cluster, "\n---\n".join([*monitoring, peering]))
    chart_cluster.kubectl_run(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
        "crd/clusterkopfpeerings.kopf.dev",
        "crd/kopfpeerings.kopf.dev",
    )
    return chart_cluster


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_server_side_dry_run_of_each_value_set(
    helm: Helm, prerequisites: Cluster, name: str
) -> None:
    objs = helm.template(VALUE_SETS[name])
    out = apply(
        prerequisites,
        "\n---\n".join(yaml.safe_dump(o) for o in objs),
        "--dry-run=server",
        "--validate=strict",
    )
    assert out.count("serverside-applied (server dry run)") == len(objs), out


def _node(name: str, extra_spec: dict[str, Any] | None = None) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "marketplace.p2p.dev/v1alpha1",
            "kind": "MarketplaceNode",
            "metadata": {"name": name, "namespace": "fleet-a"},
            "spec": {"fleet": "default", **(extra_spec or {})},
        }
    )


def _labelled(cluster: Cluster, kind: str, release: str) -> list[str]:
    items = cluster.get(kind, "-A", "-l", f"{INSTANCE}={release}")["items"]
    return [i["metadata"]["name"] for i in items]


def test_install_upgrade_with_a_new_crd_field_and_uninstall(
    cluster_helm: Helm, prerequisites: Cluster, tmp_path: Path
) -> None:
    release, ns = "mpo", "marketplace-system"
    # --take-ownership: the CRDs may already exist (another test, or applied by hand).
    cluster_helm(
        "install",
        release,
        str(CHART),
        "-n",
        ns,
        "--take-ownership",
        values={"image": {"repository": "localhost/marketplace-fleet/operator"}},
    )
    crds = {c["metadata"]["name"] for c in prerequisites.get("crd")["items"]}
    for path in (ROOT / "crds").glob("*.yaml"):
        for crd in docs(path.read_text()):
            assert crd["metadata"]["name"] in crds
    probe = {"chartUpgradeProbe": "x"}
    refused = prerequisites.kubectl_run(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        stdin=_node("probe", probe),
        check=False,
    )
    assert refused.returncode != 0
    assert "unknown field" in refused.stderr

    # The next chart version's CRD gained an optional spec field.
    upgraded = tmp_path / "chart"
    shutil.copytree(CHART, upgraded)
    template = upgraded / "templates" / "crds" / "marketplacenodes.yaml"
    head, body = template.read_text().split("\n", 2)[:2], template.read_text().split("\n", 2)[2]
    crd_text, end = body.rsplit("{{- end }}", 1)
    crd = yaml.safe_load(crd_text)
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema["properties"]["chartUpgradeProbe"] = {
        "type": "string",
        "description": "Added by the upgrade test.",
    }
    template.write_text(
        "\n".join(head) + "\n" + yaml.safe_dump(crd, sort_keys=False) + "{{- end }}" + end
    )
    cluster_helm("upgrade", release, str(upgraded), "-n", ns, "--reuse-values")
    served = prerequisites.get("crd", "marketplacenodes.marketplace.p2p.dev")
    served_spec = served["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "chartUpgradeProbe" in served_spec["properties"]
    prerequisites.kubectl_run(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=_node("probe", probe)
    )

    # Back to this chart (the field goes away again), then uninstall.
    cluster_helm("upgrade", release, str(CHART), "-n", ns, "--reuse-values")
    cluster_helm("uninstall", release, "-n", ns, "--wait")
    for kind in ("clusterroles", "clusterrolebindings", "clusterkopfpeerings"):
        assert _labelled(prerequisites, kind, release) == [], kind
    for kind in ("deployments", "serviceaccounts", "services", "roles", "rolebindings"):
        assert _labelled(prerequisites, kind, release) == [], kind
    kept = {c["metadata"]["name"]: c for c in prerequisites.get("crd")["items"]}
    for path in (ROOT / "crds").glob("*.yaml"):
        for crd in docs(path.read_text()):
            # helm.sh/resource-policy: keep — the CRDs (and every MarketplaceNode) survive
            assert crd["metadata"]["name"] in kept


def _token_client(cluster: Cluster, token: str) -> client.CoreV1Api:
    """A client that authenticates only with the ServiceAccount's token."""
    loaded = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    cfg = loaded.configuration
    cfg.cert_file = cfg.key_file = None
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.CoreV1Api(client.ApiClient(cfg))


def test_namespaced_scope_cannot_read_secrets_elsewhere(
    cluster_helm: Helm, prerequisites: Cluster
) -> None:
    release, ns = "mpo-ns", "marketplace-system"
    sa = f"system:serviceaccount:{ns}:{release}-marketplace-operator"
    cluster_helm(
        "install",
        release,
        str(CHART),
        "-n",
        ns,
        values={"scope": "namespaced", "watchNamespaces": ["fleet-a"], "crds": {"install": False}},
    )
    try:

        def can(verb: str, *where: str) -> bool:
            done = prerequisites.kubectl_run(
                "auth", "can-i", verb, "secrets", *where, f"--as={sa}", check=False
            )
            return done.stdout.strip() == "yes"

        assert can("get", "-n", "fleet-a")
        assert can("create", "-n", "fleet-a")
        # The fleet's last node deletes its shared Secrets (admin token, CA): without this
        # the chart's operator could never finish deleting a fleet (kopf retried forever).
        assert can("delete", "-n", "fleet-a")
        assert not can("get", "-n", "fleet-b")
        assert not can("list", "-n", "default")
        assert not can("get", "-n", ns)
        assert not can("list", "--all-namespaces")

        for where in ("fleet-a", "fleet-b"):
            apply(
                prerequisites,
                yaml.safe_dump(
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": "probe", "namespace": where},
                        "stringData": {"token": "s3cret"},
                    }
                ),
            )
        token = prerequisites.kubectl_run(
            "create", "token", f"{release}-marketplace-operator", "-n", ns, "--duration=10m"
        ).stdout.strip()
        api = _token_client(prerequisites, token)
        allowed = api.read_namespaced_secret("probe", "fleet-a")
        assert allowed.data is not None
        assert allowed.data["token"]
        for call in (
            lambda: api.read_namespaced_secret("probe", "fleet-b"),
            lambda: api.list_namespaced_secret("fleet-b"),
            api.list_secret_for_all_namespaces,
        ):
            with pytest.raises(ApiException) as denied:
                call()
            assert denied.value.status == 403
            assert "forbidden" in json.loads(str(denied.value.body))["message"]
    finally:
        cluster_helm("uninstall", release, "-n", ns, "--wait", check=False)
