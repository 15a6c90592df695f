"""The smoke set on the real-kubelet Node: the images run as real containers (runc,
a network namespace per pod, the restricted security context enforced), and the fleet
behaves there as under the local kubelet."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import loadgen
import yaml
from e2e_helpers import ROOT, Kubectl, OperatorProcess, condition, wait_for, wait_ready
from marketplace_operator import k8s
from marketplace_protocol.identity import Identity
from peer_helpers import banned
from real_node import REAL_NODE, Images, on_real_node
from rollout_helpers import (
    check_pods_owned,
    make_fleet,
    pod_uids,
    publish_everywhere,
    request_restart,
    wait_rollout,
)
from test_policy_propagation import apply, banlist, everywhere, served

EXAMPLE = ROOT / "examples" / "fleet.yaml"


def ready_slice_addresses(kube: k8s.BlockingKube, namespace: str, service: str) -> list[str]:
    slices = kube.request(
        "GET",
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
        query={"labelSelector": f"kubernetes.io/service-name={service}"},
    )["items"]
    return sorted(
        address
        for s in slices
        for ep in s.get("endpoints") or []
        if (ep.get("conditions") or {}).get("ready")
        for address in ep["addresses"]
    )


def test_the_real_kubelet_never_garbage_collects_the_imported_images(
    kube: k8s.BlockingKube, images: Images
) -> None:
    """The images exist only by import (pullPolicy Never): on a shared disk past 85 % the
    kubelet's image GC deleted the operator image a minute after its import, and the
    chart's pod stayed ErrImageNeverPull. The running kubelet's own configuration, as it
    serves it (configz), has image GC off."""
    config = kube.request("GET", f"/api/v1/nodes/{REAL_NODE}/proxy/configz")["kubeletconfig"]
    assert config["imageGCHighThresholdPercent"] == 100


def test_a_fleet_of_three_becomes_ready_with_real_endpointslices(
    kube: k8s.BlockingKube,
    kubectl: Kubectl,
    namespace: str,
    operator: OperatorProcess,
    images: Images,
) -> None:
    kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    names = ["market-a", "market-b", "market-c"]
    nodes = wait_ready(kube, namespace, names, timeout=180)
    for node in nodes:
        pod = on_real_node(kube.get(k8s.PODS, namespace, node["status"]["podName"]))
        (container,) = pod["status"]["containerStatuses"]
        assert container["image"].endswith(images.node.split("/", 1)[1]), container["image"]
        assert container["containerID"].startswith("containerd://")
        joined = condition(pod, "marketplace.p2p.dev/joined")
        assert joined is not None
        assert joined["status"] == "True"
        # The node's Service has a real EndpointSlice with the pod's bridge address.
        name, ip = node["metadata"]["name"], pod["status"]["podIP"]

        def listed(name: str = name, ip: str = ip) -> bool:
            return ready_slice_addresses(kube, namespace, name) == [ip]

        wait_for(
            listed,
            timeout=30,
            what=f"the EndpointSlice of {name} to list {ip} ready",
        )

    def meshed() -> bool:
        return all(
            (kube.get(k8s.MNODES, namespace, n) or {}).get("status", {}).get("peers", 0) >= 2
            for n in names
        )

    wait_for(meshed, timeout=60, what="every node connected to both others")

    # runc enforces the pod's security context: not root, read-only root filesystem.
    who = kubectl("exec", "-n", namespace, names[0], "--", "id", "-u").stdout.strip()
    assert who == "65532"
    denied = kubectl("exec", "-n", namespace, names[0], "--", "touch", "/x", check=False)
    assert denied.returncode != 0
    assert "Read-only file system" in denied.stderr


def test_workloads_that_bind_all_addresses_run_side_by_side(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    """The issue's first report: two replicas of `python -m http.server 8080` (0.0.0.0)
    crash-loop under the local kubelet (one network namespace); here each pod has its own."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": images.node,
                            "imagePullPolicy": "Never",
                            "command": ["python3", "-m", "http.server", "8080"],
                            "workingDir": "/tmp",
                            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}},
                        }
                    ]
                },
            },
        },
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(deployment))
    kubectl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=120s")
    pods = kube.list(k8s.PODS, namespace, labels={"app": "web"})
    assert len(pods) == 2
    for pod in pods:
        on_real_node(pod)
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0


def test_a_banlist_propagates_to_every_node(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    names = make_fleet(kube, namespace, "blue", 3)
    ips = {n: on_real_node(kube.get(k8s.PODS, namespace, n))["status"]["podIP"] for n in names}
    peer = Identity.generate()
    wait_for(everywhere(ips, peer, served), timeout=10, what="the peer served")
    started = time.monotonic()
    apply(kubectl, namespace, banlist("smoke-ban", peer.peer_id))
    wait_for(everywhere(ips, peer, banned), timeout=10, interval=0.05, what="banned everywhere")
    print(f"ban propagated to 3 nodes in {time.monotonic() - started:.2f}s")


def test_a_rolling_restart_under_load_through_the_services_fails_no_request(
    kube: k8s.BlockingKube,
    kubeconfig: str,
    namespace: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    """Load goes to what the nodes' Services' EndpointSlices list as ready (the real
    EndpointSlice controller, fed by the real kubelet's readiness), as kube-proxy would."""
    names = make_fleet(kube, namespace, "load", 3)
    package_id = publish_everywhere(kube, namespace, names, tmp_path, keyword="steady")
    before = pod_uids(kube, namespace, names)
    slices = loadgen.SliceEndpoints(kubeconfig, namespace)
    assert len(slices.ready_addresses()) == 3

    def restart() -> dict[str, str]:
        request_restart(kube, namespace, names)
        return wait_rollout(kube, namespace, "load", names, before, timeout=240)

    after, took, report = loadgen.without_failures(
        slices.ready_addresses, restart, package_id=package_id, keyword="steady"
    )
    assert all(before[n] != after[n] for n in names)
    check_pods_owned(kube, namespace, "load", names)
    for name in names:
        on_real_node(kube.get(k8s.PODS, namespace, name))
    print(f"rollout of 3 nodes on the real kubelet took {took:.1f}s; {report.summary()}")


def test_the_operator_runs_as_a_pod_from_its_image(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, images: Images, tmp_path: Path
) -> None:
    """The chart's Deployment, from the operator image, in-cluster credentials through
    the `kubernetes` Service address, reconciling a MarketplaceNode to Ready."""
    helm = subprocess_out([str(ROOT / "hack" / "helm.sh")]).strip()
    repo, tag = images.operator.rsplit(":", 1)
    values = {
        "image": {"repository": repo, "tag": tag, "pullPolicy": "Never"},
        "nodeImage": {"repository": images.node.rsplit(":", 1)[0], "tag": tag},
        "crds": {"install": False},
        "scope": "namespaced",
        "watchNamespaces": [namespace],
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    kubeconfig = kubectl("config", "view", "--raw", "--minify").stdout
    (tmp_path / "kubeconfig").write_text(kubeconfig)
    release = "smoke"
    try:
        subprocess_out(
            [helm, "install", release, str(ROOT / "charts" / "marketplace-operator"),
             "-n", namespace, "-f", str(tmp_path / "values.yaml"),
             "--kubeconfig", str(tmp_path / "kubeconfig"), "--wait", "--timeout", "180s"],
        )  # fmt: skip
        (pod,) = kube.list(k8s.PODS, namespace, labels={"app.kubernetes.io/instance": release})
        on_real_node(pod)
        kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(
            {"apiVersion": "marketplace.p2p.dev/v1alpha1", "kind": "MarketplaceNode",
             "metadata": {"name": "by-pod"}, "spec": {"fleet": "pod"}}))  # fmt: skip
        (node,) = wait_ready(kube, namespace, ["by-pod"], timeout=180)
        on_real_node(kube.get(k8s.PODS, namespace, node["status"]["podName"]))
        logs = kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout
        assert "Forbidden" not in logs, logs[-3000:]
        assert "403" not in logs, logs[-3000:]
        kubectl("delete", "mnode", "-n", namespace, "by-pod", "--timeout=60s", check=False)
    finally:
        # Also after a failure: the release's ClusterRoles outlive the namespace, and the
        # next run's install (another namespace) would refuse to adopt them.
        subprocess_out([helm, "uninstall", release, "-n", namespace, "--ignore-not-found",
                        "--kubeconfig", str(tmp_path / "kubeconfig"), "--wait"])  # fmt: skip


def subprocess_out(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{argv[:2]} failed:\n{done.stderr[-3000:]}"
    return done.stdout
