"""Drain benchmark: `kubectl drain` of one Node under client load — our fleet beside a
StatefulSet with a PodDisruptionBudget, in the same run, off the same Node.

Both run the same node image on the multi-node local cluster (`make cluster`, 3 Nodes),
with data volumes of the default class (`local-dir`: local volumes bound to their Node):
ours, N MarketplaceNodes (the fleet's PDB, relocation on); theirs, an N-replica
StatefulSet with a `volumeClaimTemplate` and a PDB of `maxUnavailable: 1`. Each gets the
same steady load (searches at a fixed rate, sent only to ready pods, one connection per
request; `tests/e2e/loadgen.py`). Then one `kubectl drain` evicts the pods of both from
the Node holding most of ours, through the eviction API.

Reported per fleet: failed client requests, the most pods unavailable at once, and the
time from the drain's start until every pod is Ready again and none is on the drained
Node (or that it never was within the deadline: a StatefulSet pod whose local volume is on
the cordoned Node cannot be scheduled elsewhere). Target: 0 failed requests for ours.
Needs KUBECONFIG (``make bench`` sets it) and a cluster of at least 2 local Nodes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from marketplace_operator import k8s
from marketplace_operator.settings import DEFAULT_NODE_IMAGE

from bench import cluster

sys.path.insert(0, str(cluster.ROOT / "tests" / "e2e"))

import loadgen
import rollout_helpers
from e2e_helpers import local_nodes

N = 6
RATE = 20.0
DRAIN = rollout_helpers.DRAIN_SECONDS
DEADLINE = 240.0  # after the drain starts: how long "Ready again" is waited for
STATEFULSETS = k8s.Resource("statefulsets", "apps", "v1")
SELECTOR = "app.kubernetes.io/name=marketplace-node"


def _statefulset(namespace: str, name: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "marketplace-node", loadgen.FLEET_LABEL: name}
    env = {
        "MARKETPLACE_NODE_PORT": "7070",
        "MARKETPLACE_NODE_DATA_DIR": "/var/lib/marketplace",
        "MARKETPLACE_NODE_FLEET": name,
        "MARKETPLACE_NODE_DRAIN_TIMEOUT_SECONDS": str(DRAIN),
    }
    container = {
        "name": "node",
        "image": DEFAULT_NODE_IMAGE,
        "env": [
            {
                "name": "MARKETPLACE_NODE_HOST",
                "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
            },
            *({"name": k, "value": v} for k, v in env.items()),
        ],
        "ports": [{"name": "p2p", "containerPort": 7070}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 7070}, "periodSeconds": 1},
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/marketplace"}],
    }
    claim = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": N,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": DRAIN + 10, "containers": [container]},
            },
            "volumeClaimTemplates": [claim],
        },
    }


def _kubectl(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """The cluster's own kubectl (`.cluster/bin`) if there is one, against $KUBECONFIG."""
    local = Path(os.environ["KUBECONFIG"]).parent / "bin" / "kubectl"
    binary = str(local) if local.exists() else "kubectl"
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, check=False, timeout=timeout
    )


def _pdb(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {loadgen.FLEET_LABEL: name}},
        },
    }


def _placement(kube: k8s.BlockingKube, namespace: str) -> dict[str, str]:
    pods = kube.request(
        "GET", f"/api/v1/namespaces/{namespace}/pods", query={"labelSelector": SELECTOR}
    )["items"]
    return {p["metadata"]["name"]: p["spec"].get("nodeName") or "" for p in pods}


def _settled(kube: k8s.BlockingKube, namespace: str, watch: loadgen.FleetWatch, gone: str) -> bool:
    """Every member Ready and none on the drained Node."""
    placed = _placement(kube, namespace)
    ready = set(watch.ready_addresses())
    return len(placed) == N and gone not in placed.values() and len(ready) == N


class Fleet:
    """One fleet under load for the run: its watch, its load, when it settled."""

    def __init__(self, label: str, kubeconfig: str, namespace: str, name: str, members: list[str]):
        self.label, self.namespace = label, namespace
        self.watch = loadgen.FleetWatch(kubeconfig, namespace, name, members)
        self.load = loadgen.LoadGenerator(
            self.watch.ready_addresses, package_id=None, keyword="bench", rate=RATE
        )
        self.settled_after: float | None = None

    def __enter__(self) -> Fleet:
        self.watch.start()
        self.load.__enter__()
        return self

    def __exit__(self, *_: object) -> None:
        self.load.stop()
        self.watch.stop()


def main() -> int:
    kubeconfig = cluster.require_kubeconfig()
    kube = k8s.BlockingKube.from_environment()
    if len(local_nodes(kube)) < 2:
        print("bench_drain: needs a cluster of several Nodes (make cluster NODES=3)")
        kube.close()
        return 1
    run = uuid.uuid4().hex[:5]
    ns_op, ns_sts = f"bench-drain-{run}", f"bench-drain-sts-{run}"
    for ns in (ns_op, ns_sts):
        kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": ns}})
    log_dir = Path(os.environ.get("BENCH_LOG_DIR", tempfile.gettempdir()))
    operator = cluster.Operator(ns_op, log_dir / f"bench-drain-{run}.log")
    drained = ""
    drain_result: dict[str, Any] = {}
    try:
        operator.start()
        kube.create(STATEFULSETS, _statefulset(ns_sts, "sts"))
        kube.request(
            "POST", f"/apis/policy/v1/namespaces/{ns_sts}/poddisruptionbudgets",
            body=_pdb(ns_sts, "sts"),
        )  # fmt: skip
        names = rollout_helpers.make_fleet(kube, ns_op, "drain", N, ready_timeout=300)
        pods = [f"sts-{i}" for i in range(N)]
        cluster.wait(
            "the StatefulSet ready",
            lambda: (
                ((kube.get(STATEFULSETS, ns_sts, "sts") or {}).get("status") or {}).get(
                    "readyReplicas"
                )
                == N
            ),
            deadline=300,
            interval=0.5,
        )
        ours_on = Counter(_placement(kube, ns_op).values())
        drained = ours_on.most_common(1)[0][0]
        on_node = {
            "ours": ours_on[drained],
            "sts": Counter(_placement(kube, ns_sts).values())[drained],
        }
        with (
            Fleet("ours (MarketplaceNodes)", kubeconfig, ns_op, "drain", names) as ours,
            Fleet("StatefulSet + PDB", kubeconfig, ns_sts, "sts", pods) as theirs,
        ):
            time.sleep(2)
            started = time.monotonic()

            def drain() -> None:
                done = _kubectl(
                    "drain", drained, "--pod-selector", SELECTOR, "--ignore-daemonsets",
                    "--delete-emptydir-data", f"--timeout={int(DEADLINE)}s",
                    timeout=DEADLINE + 30,
                )  # fmt: skip
                drain_result.update(rc=done.returncode, took=time.monotonic() - started)

            drainer = threading.Thread(target=drain, daemon=True)
            drainer.start()
            while time.monotonic() - started < DEADLINE:
                for fleet in (ours, theirs):
                    if fleet.settled_after is None and _settled(
                        kube, fleet.namespace, fleet.watch, drained
                    ):
                        fleet.settled_after = time.monotonic() - started
                if ours.settled_after is not None and theirs.settled_after is not None:
                    break
                time.sleep(0.5)
            time.sleep(2)
        drainer.join(DEADLINE)
        results = [
            (f.label, f.load.report, len(f.watch.most_unavailable().unavailable), f.settled_after)
            for f in (ours, theirs)
        ]
    finally:
        if drained:
            _kubectl("uncordon", drained, timeout=60)
        operator.stop()
        for ns in (ns_op, ns_sts):
            cluster.release_namespace(kube, ns)
        kube.close()

    drain_took = drain_result.get("took", float("nan"))
    drain_ok = drain_result.get("rc") == 0
    print(
        f"kubectl drain of {drained} ({on_node['ours']} of our {N} nodes, "
        f"{on_node['sts']} of the StatefulSet's {N} pods on it) under {RATE:.0f} searches/s "
        f"per fleet: drain {'finished' if drain_ok else 'did NOT finish'} in {drain_took:.1f} s"
    )
    for label, load, worst, settled in results:
        again = f"{settled:6.1f} s" if settled is not None else f"not within {DEADLINE:.0f} s"
        print(
            f"  {label:24s} {len(load.failures):3d} failed of {load.total} requests, "
            f"at most {worst} unavailable, all Ready off {drained} after {again}"
        )
    print(f"  goal: 0 failed requests for ours ({len(results[0][1].failures)} failed)")
    ours_report = results[0][1]
    for f in ours_report.failures[:5]:
        print(f"    ours failure: {f.error[:120]}")
    sys.stdout.flush()
    return 0 if not ours_report.failures and results[0][3] is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
