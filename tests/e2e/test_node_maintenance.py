"""Node maintenance and loss on the multi-node local cluster (docs/operations.md).

`kubectl drain` evicts the fleet's pods through the eviction API and the fleet's
PodDisruptionBudget: the fleet stays available (never more than one node out), and each
evicted node comes back on another Node with a new data volume. A lost Node (its kubelet
and processes killed: `hack/cluster.sh stop-node`) has its nodes replaced on healthy
Nodes after `relocation.nodeLostGraceSeconds`, and the fleet lists each node once.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from typing import Any

import pytest
from e2e_helpers import (
    ROOT,
    Kubectl,
    OperatorProcess,
    condition,
    local_nodes,
    mnode_body,
    placement,
    wait_for,
    wait_ready,
)
from marketplace_operator import k8s

NAMES = ["roam-a", "roam-b", "roam-c"]
FLEET = "roam"
SPEC: dict[str, Any] = {
    "fleet": FLEET,
    "drainTimeoutSeconds": 5,
    "relocation": {"nodeLostGraceSeconds": 5},
}


class Disruptions:
    """Samples the fleet in the background: the most nodes taken out by evictions at once
    (pod deleting, gone, or replaced and not yet Ready) and the fewest Ready pods.

    Out-of-eviction is what the PodDisruptionBudget bounds; a Ready pod's readiness probe
    may also blip on a loaded machine, which no budget governs, so readiness is only
    required to never reach zero (the fleet keeps serving)."""

    def __init__(self, kube: k8s.BlockingKube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.most_out, self.least_ready = 0, len(NAMES)
        self.seen: list[str] = []  # the pods when the most were out
        self._start = self._pods()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pods(self) -> dict[str, dict[str, Any]]:
        items = self.kube.request(
            "GET", f"/api/v1/namespaces/{self.namespace}/pods",
            query={"labelSelector": f"marketplace.p2p.dev/fleet={FLEET}"},
        )["items"]  # fmt: skip
        return {p["metadata"]["name"]: p for p in items}

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            pods = self._pods()
            ready = {
                n for n, p in pods.items() if (condition(p, "Ready") or {}).get("status") == "True"
            }
            out = [
                n
                for n in NAMES
                if n not in pods
                or pods[n]["metadata"].get("deletionTimestamp")
                or (
                    pods[n]["metadata"]["uid"] != self._start[n]["metadata"]["uid"]
                    and n not in ready
                )
            ]
            self.least_ready = min(self.least_ready, len(ready))
            if len(out) > self.most_out:
                self.most_out, self.seen = len(out), out

    def __enter__(self) -> Disruptions:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def claim_node(kube: k8s.BlockingKube, namespace: str, name: str) -> str | None:
    claim = kube.get(k8s.PVCS, namespace, f"{name}-data") or {}
    notes = (claim.get("metadata") or {}).get("annotations") or {}
    return notes.get("volume.kubernetes.io/selected-node")


def cluster_sh(*args: str) -> None:
    subprocess.run(
        [str(ROOT / "hack" / "cluster.sh"), *args],
        check=True, capture_output=True, timeout=120, env=os.environ,
    )  # fmt: skip


def all_ready_away_from(kube: k8s.BlockingKube, namespace: str, gone: str) -> dict[str, str] | None:
    """Pod -> Node once every node is Ready again and none runs on `gone`."""
    placed = placement(kube, namespace, NAMES)
    ready = all(
        (condition(kube.get(k8s.MNODES, namespace, n), "Ready") or {}).get("status") == "True"
        for n in NAMES
    )
    return placed if ready and len(placed) == len(NAMES) and gone not in placed.values() else None


@pytest.mark.timeout(600)
def test_a_fleet_moves_off_a_drained_node_and_off_a_lost_one(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    if len(local_nodes(kube)) < 3:
        pytest.fail("needs the local cluster's 3 Nodes (make cluster)")
    for name in NAMES:
        kube.create(k8s.MNODES, mnode_body(name, namespace, **SPEC))
    wait_ready(kube, namespace, NAMES, timeout=150)

    # --- drain: through the eviction API and the fleet's PDB ---------------------------
    drained = placement(kube, namespace, NAMES)["roam-a"]
    try:
        with Disruptions(kube, namespace) as counter:
            done = kubectl(
                "drain", drained, "--pod-selector", f"marketplace.p2p.dev/fleet={FLEET}",
                "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=100s",
                check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            moved = wait_for(
                lambda: all_ready_away_from(kube, namespace, drained),
                timeout=150,
                what=f"every node Ready again, none on the drained {drained}",
            )
        assert counter.most_out == 1, counter.seen  # one at a time, as the PDB allows
        assert counter.least_ready >= 1  # the fleet kept serving
        for name, node in moved.items():
            assert claim_node(kube, namespace, name) == node  # its data volume moved too
    finally:
        kubectl("uncordon", drained, check=False)

    # --- loss: the Node's kubelet and its processes are gone ----------------------------
    lost = placement(kube, namespace, NAMES)["roam-b"]
    on_lost = sorted(n for n, node in placement(kube, namespace, NAMES).items() if node == lost)
    try:
        cluster_sh("stop-node", lost)
        wait_for(
            lambda: all_ready_away_from(kube, namespace, lost),
            timeout=200,
            what=f"{on_lost} Ready on healthy Nodes after {lost} was lost",
        )
    finally:
        cluster_sh("start-node", lost)

    def listed() -> list[str]:
        members = kube.get(k8s.CONFIGMAPS, namespace, f"{FLEET}-policy")
        assert members is not None
        return sorted(m["name"] for m in json.loads(members["data"]["members.json"])["members"])

    # The fleet's leader rewrites members.json at its next pass (within its poll interval):
    # each node once, the lost pod gone and not doubled.
    wait_for(lambda: listed() == NAMES, timeout=30, what=f"members.json to list {NAMES} once")
    for name in NAMES:
        peers = (kube.get(k8s.MNODES, namespace, name) or {})["status"].get("connectedPeers", [])
        assert len(peers) == len(set(peers)) <= len(NAMES) - 1
