"""Under POD_NETWORK=netns the operator runs as a pod, installed by the chart as `make up`
installs it: from its own network namespace it reaches the API server through the
`kubernetes` Service and its nodes' admin APIs across the bridge, and two
MarketplaceNodes on different Nodes become Ready and peer (#18)."""

from __future__ import annotations

import json
import os
import subprocess

from e2e_helpers import ROOT, Kubectl, mnode_body, wait_ready
from marketplace_operator import k8s


def test_the_operator_runs_as_a_pod_in_its_own_network_namespace(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str
) -> None:
    # The release lives in the test's namespace: its deletion takes the rest along.
    env = {**os.environ, "NAMESPACE": namespace, "RELEASE_NAMESPACE": namespace}
    release = "app.kubernetes.io/instance=marketplace-operator"
    try:
        done = subprocess.run(
            [str(ROOT / "hack" / "chart-up.sh")], env=env, check=False, timeout=300,
            capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        two_nodes_peer_under_the_operator_pod(kube, kubectl, namespace, release)
    finally:
        # The operator goes before the namespace: running, it would put back the
        # finalizers the namespace fixture takes off, then die with the namespace and
        # leave it Terminating for good (it did, in every run before).
        kubectl("delete", "deployment", "-n", namespace, "-l", release, "--wait", check=False)
        kubectl(
            "wait", "--for=delete", "pod", "-n", namespace, "-l", release, "--timeout=60s",
            check=False,
        )  # fmt: skip


def two_nodes_peer_under_the_operator_pod(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, release: str
) -> None:
    out = kubectl("get", "pods", "-n", namespace, "-l", release, "-o", "json").stdout
    pods = json.loads(out)["items"]
    (operator,) = pods
    assert not operator["status"]["podIP"].startswith("127.")
    assert not operator["spec"].get("hostNetwork")

    for name, node in (("a", "local-node"), ("b", "local-node-2")):
        placed = {"nodeSelector": {"kubernetes.io/hostname": node}}
        body = mnode_body(name, namespace, fleet="netns", scheduling=placed)
        kubectl("apply", "-f", "-", input=json.dumps(body))
    ready = wait_ready(kube, namespace, ["a", "b"], timeout=120)
    assert [obj["status"]["peers"] for obj in ready] == [1, 1]
