"""A MarketplaceNode fleet on a real cluster: Ready means joined, and the mesh is real."""

from __future__ import annotations

import json
from pathlib import Path

from e2e_helpers import (
    ROOT,
    Kubectl,
    OperatorProcess,
    condition,
    node_cli,
    wait_for,
    wait_ready,
)
from marketplace_operator import k8s

EXAMPLE = ROOT / "examples" / "fleet.yaml"
NAMES = ["market-a", "market-b", "market-c"]


def test_example_fleet_becomes_ready_and_forms_a_mesh(
    kube: k8s.BlockingKube,
    kubectl: Kubectl,
    namespace: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    nodes = wait_ready(kube, namespace, NAMES, timeout=120)

    peer_ids = {n["status"]["peerId"] for n in nodes}
    assert len(peer_ids) == 3
    for node in nodes:
        status = node["status"]
        assert status["phase"] == "Ready"
        assert status["podName"] == node["metadata"]["name"]
        pod = kube.get(k8s.PODS, namespace, status["podName"])
        assert pod is not None
        joined = condition(pod, "marketplace.p2p.dev/joined")
        assert joined is not None
        assert joined["status"] == "True"
        assert pod["status"]["podIP"] == status["podIP"]

    def meshed() -> bool:
        return all(
            (kube.get(k8s.MNODES, namespace, n) or {}).get("status", {}).get("peers", 0) >= 2
            for n in NAMES
        )

    wait_for(meshed, timeout=60, what="every node connected to both others")

    members = kube.get(k8s.CONFIGMAPS, namespace, "demo-policy")
    assert members is not None
    listed = json.loads(members["data"]["members.json"])["members"]
    assert sorted(m["name"] for m in listed) == NAMES

    # A package published on one node is found through another.
    first, last = nodes[0]["status"], nodes[2]["status"]
    content = tmp_path / "pkg.txt"
    content.write_text("hello fleet\n")
    published = node_cli(
        "publish", "--node", f"http://{first['podIP']}:7070", "--name", "e2e-mesh-pkg",
        "--version", "1.0.0", "--description", "published on market-a", "--tag", "e2e",
        str(content),
    )  # fmt: skip
    assert published.returncode == 0, published.stderr

    def found() -> bool:
        got = node_cli("search", "--node", f"http://{last['podIP']}:7070", "e2e-mesh-pkg")
        if got.returncode != 0:
            return False
        results = json.loads(got.stdout)["results"]
        return any(r["package"]["name"] == "e2e-mesh-pkg" for r in results)

    wait_for(found, timeout=30, what="the package published on market-a found via market-c")

    out = kubectl("get", "mnode", "-n", namespace).stdout
    for column in ("FLEET", "PHASE", "PEERS", "READY", "POLICY", "AGE"):
        assert column in out
