"""Operator benchmark: 20 MarketplaceNodes to all Ready, next to a 20-replica Deployment.

Both run the same node image on the same cluster in the same run, one after the other
(the machine is small). A StatefulSet with the same per-node claims is shown as well: the
Deployment's pods have no volume to provision, the MarketplaceNodes do. "Ready" for a
MarketplaceNode means serving *and* joined to its fleet (the readiness gate); the
Deployment's pods only need their readiness probe, so the ratio prices membership. Also
reported: the operator's RSS with the 20 nodes and the CPU time it spent on the
MarketplaceNodes' rounds (start-up to Ready, then deletion with drain). Target: ratio <= 1.2.
Needs KUBECONFIG (``make bench`` sets it). `BENCH_OPERATOR_NODES` (default 20) sizes the
fleet and the two workloads, for a quick comparison on a busy machine.

The machine is shared and noisy, so the three workloads run in interleaved rounds
(`BENCH_OPERATOR_ROUNDS`, default 3) and the ratio is of the medians: a burst of
someone else's load then lands on one sample of one workload, not on the result.
"""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from marketplace_operator import k8s
from marketplace_operator.model.common import API_VERSION, GROUP, VERSION
from marketplace_operator.settings import DEFAULT_NODE_IMAGE

from bench import cluster

N = int(os.environ.get("BENCH_OPERATOR_NODES", "20"))
TARGET_RATIO = 1.2
DEADLINE = 300.0
ROUNDS = int(os.environ.get("BENCH_OPERATOR_ROUNDS", "3"))
MILESTONE_RESOLUTION = 0.05  # seconds
DEPLOYMENTS = k8s.Resource("deployments", "apps", "v1")
STATEFULSETS = k8s.Resource("statefulsets", "apps", "v1")


def _deployment(namespace: str, name: str) -> dict[str, Any]:
    labels = {"app": name}
    probe = {
        "httpGet": {"path": "/readyz", "port": 9070},  # the private listener
        "periodSeconds": 1,
        "failureThreshold": 1,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": N,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "node",
                            "image": DEFAULT_NODE_IMAGE,
                            "env": [
                                {
                                    "name": "MARKETPLACE_NODE_HOST",
                                    "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                                },
                                {"name": "MARKETPLACE_NODE_PORT", "value": "7070"},
                                {
                                    "name": "MARKETPLACE_NODE_DATA_DIR",
                                    "value": "/var/lib/marketplace",
                                },
                                {"name": "MARKETPLACE_NODE_FLEET", "value": "bench"},
                            ],
                            "readinessProbe": probe,
                            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/marketplace"}],
                        }
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def _statefulset(namespace: str, name: str) -> dict[str, Any]:
    """The Deployment's pods with the MarketplaceNode's storage: one 1Gi claim each."""
    template = _deployment(namespace, name)["spec"]["template"]
    template["spec"]["volumes"] = []
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": N,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"},
            "selector": {"matchLabels": {"app": name}},
            "template": template,
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }


def _mnode(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "MarketplaceNode",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"fleet": "bench"},
    }


Objects = dict[str, dict[str, dict[str, Any]]]


def _true(obj: dict[str, Any], kind: str) -> bool:
    return any(
        c["type"] == kind and c["status"] == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def _ready_replicas(obj: dict[str, Any] | None) -> int:
    return int(((obj or {}).get("status") or {}).get("readyReplicas") or 0)


def _milestones(objects: Objects) -> dict[str, bool]:
    """Where the fleet's start-up stands: which stages every node has passed."""
    claims, pods = list(objects["claims"].values()), list(objects["pods"].values())
    every = len(pods) >= N
    return {
        "data volumes bound": len(claims) >= N
        and all((c.get("status") or {}).get("phase") == "Bound" for c in claims),
        "pods created": every,
        "pods scheduled": every and all(_true(p, "PodScheduled") for p in pods),
        "nodes serving (containers ready)": every
        and all(_true(p, "ContainersReady") for p in pods),
    }


def _watch(ns_deploy: str, ns_op: str) -> cluster.Watched:
    """Watches on everything the run waits for: measuring must not load the API server."""
    watched = cluster.Watched()
    core, apps, custom = client.CoreV1Api(), client.AppsV1Api(), client.CustomObjectsApi()
    watched.follow("deployments", apps.list_namespaced_deployment, ns_deploy)
    watched.follow("statefulsets", apps.list_namespaced_stateful_set, ns_deploy)
    watched.follow("workload pods", core.list_namespaced_pod, ns_deploy)
    watched.follow("pods", core.list_namespaced_pod, ns_op)
    watched.follow("claims", core.list_namespaced_persistent_volume_claim, ns_op)
    mnodes = (GROUP, VERSION, ns_op, k8s.MNODES.plural)
    watched.follow("mnodes", custom.list_namespaced_custom_object, *mnodes)
    return watched


@dataclass
class Round:
    deployment: float
    statefulset: float
    mnodes: float
    milestones: dict[str, float]
    cpu: float  # the operator's CPU seconds over the MarketplaceNodes' start-up and deletion


def _workload(
    kube: k8s.BlockingKube, watched: cluster.Watched, resource: k8s.Resource, body: dict[str, Any]
) -> float:
    """One workload from creation to all replicas ready; then deleted, its pods waited out."""
    kind, name, ns = body["kind"], body["metadata"]["name"], body["metadata"]["namespace"]
    collection = {"Deployment": "deployments", "StatefulSet": "statefulsets"}[kind]
    kube.create(resource, body)
    elapsed = watched.wait_until(
        f"{N} {kind} replicas ready",
        lambda o: _ready_replicas(o[collection].get(name)) >= N,
        deadline=DEADLINE,
    )
    kube.delete(resource, ns, name)
    watched.wait_until(
        f"the {kind}'s pods gone", lambda o: not o["workload pods"], deadline=DEADLINE
    )
    return elapsed


def _workloads(
    kube: k8s.BlockingKube, watched: cluster.Watched, ns: str, r: int
) -> tuple[float, float]:
    """The Deployment, then the StatefulSet."""
    name = f"bench-node-r{r}"  # a fresh name: the last round's ReplicaSet may still be going
    t_deploy = _workload(kube, watched, DEPLOYMENTS, _deployment(ns, name))
    t_sts = _workload(kube, watched, STATEFULSETS, _statefulset(ns, name))
    return t_deploy, t_sts


def _mnodes(
    kube: k8s.BlockingKube, watched: cluster.Watched, ns: str, r: int
) -> tuple[float, dict[str, float]]:
    """Twenty MarketplaceNodes from `kubectl apply` to all Ready; then they are deleted
    (drained by the operator) and their pods and claims waited out."""
    names = [f"bench-r{r}-{i:02d}" for i in range(N)]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # as `kubectl apply` of a list
        list(pool.map(lambda n: kube.create(k8s.MNODES, _mnode(n, ns)), names))
    milestones: dict[str, float] = {"MarketplaceNodes created": time.monotonic() - started}
    checked = [0.0]

    def progress(objects: Objects) -> bool:
        # Every watch event re-evaluates this; the milestones (diagnostics) at most
        # every 50 ms: scanning forty objects per event took a third of a CPU second
        # from the run it measures.
        now = time.monotonic() - started
        if now - checked[0] >= MILESTONE_RESOLUTION:
            checked[0] = now
            for name, reached in _milestones(objects).items():
                if reached:
                    milestones.setdefault(name, now)
        return sum(_true(m, "Ready") for m in objects["mnodes"].values()) >= N

    watched.wait_until(f"{N} MarketplaceNodes Ready", progress, deadline=DEADLINE)
    elapsed = time.monotonic() - started
    for n in names:
        kube.delete(k8s.MNODES, ns, n)
    watched.wait_until(
        "the MarketplaceNodes, their pods and claims gone",
        lambda o: not (o["mnodes"] or o["pods"] or o["claims"]),
        deadline=DEADLINE,
    )
    return elapsed, milestones


def main() -> int:
    cluster.require_kubeconfig()
    kube = k8s.BlockingKube.from_environment()
    run = uuid.uuid4().hex[:5]
    ns_deploy, ns_op = f"bench-deploy-{run}", f"bench-operator-{run}"
    cluster.apply_crds()
    for ns in (ns_deploy, ns_op):
        kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": ns}})
    log_dir = Path(os.environ.get("BENCH_LOG_DIR", cluster.ROOT / ".cluster"))
    operator = cluster.Operator(ns_op, log_dir / f"bench-operator-{run}.log")
    rounds: list[Round] = []
    rss = 0.0
    try:
        operator.start()  # the operator's start-up is not what is measured
        watched = _watch(ns_deploy, ns_op)
        for r in range(ROUNDS):
            t_deploy, t_sts = _workloads(kube, watched, ns_deploy, r)
            cpu_before = operator.cpu_seconds()
            t_mnodes, milestones = _mnodes(kube, watched, ns_op, r)
            cpu = operator.cpu_seconds() - cpu_before
            rounds.append(Round(t_deploy, t_sts, t_mnodes, milestones, cpu))
            print(
                f"round {r + 1}: MarketplaceNodes {t_mnodes:5.2f} s, Deployment {t_deploy:5.2f} s"
                f" ({t_mnodes / t_deploy:.2f}), StatefulSet {t_sts:5.2f} s,"
                f" operator CPU {cpu:5.2f} s",
                flush=True,
            )
            if r == 0:
                rss = operator.rss_mib()  # the operator with its first 20 nodes
        watched.close()
    finally:
        operator.stop()  # first: a running operator would put its finalizers back
        for ns in (ns_op, ns_deploy):
            cluster.release_namespace(kube, ns)
        kube.close()
    t_operator = statistics.median(r.mnodes for r in rounds)
    t_deploy = statistics.median(r.deployment for r in rounds)
    t_sts = statistics.median(r.statefulset for r in rounds)
    ratio = t_operator / t_deploy
    print(f"medians of {ROUNDS} interleaved rounds:")
    print(f"{N} MarketplaceNodes all Ready (joined): {t_operator:6.2f} s")
    print(f"{N}-replica Deployment all ready:        {t_deploy:6.2f} s")
    print(f"ratio operator/Deployment:               {ratio:6.2f}  (target <= {TARGET_RATIO})")
    sts = f"{t_sts:6.2f} s  (ratio {t_operator / t_sts:.2f})"
    print(f"{N}-replica StatefulSet, same 1Gi claims: {sts}")
    print(f"operator RSS with {N} nodes:              {rss:6.1f} MiB")
    cpu = statistics.median(r.cpu for r in rounds)
    print(f"operator CPU, {N} nodes up and down:       {cpu:6.2f} s")
    print("start-up milestones (medians):")
    for name in sorted(rounds[0].milestones, key=rounds[0].milestones.__getitem__):
        at = statistics.median(r.milestones.get(name, float("nan")) for r in rounds)
        print(f"  all {name + ':':34s} {at:6.2f} s")
    sys.stdout.flush()
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
