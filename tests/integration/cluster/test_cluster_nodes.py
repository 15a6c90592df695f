"""Several local Nodes (`NODES=N`, default 3): each its own zone and pod range, pods on
different Nodes reach each other, and a claim's volume is made on, and bound to, its
pod's Node."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.cluster

Wait = Callable[..., Any]
ZONE = "topology.kubernetes.io/zone"
LOCAL = "marketplace.p2p.dev/local-kubelet"

SERVE = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["NODE"].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
http.server.HTTPServer((os.environ["IP"], 8080), H).serve_forever()
"""
FETCH = """
import os, time, urllib.request
while True:
    try:
        body = urllib.request.urlopen(os.environ["URL"], timeout=2).read().decode()
        print("got", body, flush=True)
    except OSError as exc:
        print("error", exc, flush=True)
    time.sleep(0.5)
"""


def local_nodes(core: Any) -> list[Any]:
    return [n for n in core.list_node().items if (n.metadata.labels or {}).get(LOCAL) == "true"]


def pinned(name: str, script: str, node: str, env: dict[str, str], **spec: Any) -> Any:
    return {
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "main",
                    "image": "python:3.11-slim",
                    "command": ["python", "-u", "-c", script],
                    "env": [
                        *({"name": k, "value": v} for k, v in env.items()),
                        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    ],
                }
            ],
            "terminationGracePeriodSeconds": 1,
            **spec,
        },
    }


def test_each_local_node_has_its_own_zone_and_pod_range(core: Any) -> None:
    nodes = local_nodes(core)
    assert len(nodes) >= 3, [n.metadata.name for n in nodes]  # make cluster's default
    zones = [n.metadata.labels[ZONE] for n in nodes]
    assert len(set(zones)) == len(zones)
    ranges = [ipaddress.ip_network(n.spec.pod_cidr) for n in nodes]
    assert all(not a.overlaps(b) for i, a in enumerate(ranges) for b in ranges[i + 1 :])
    assert all(n.status.daemon_endpoints.kubelet_endpoint.port for n in nodes)
    assert len({n.status.daemon_endpoints.kubelet_endpoint.port for n in nodes}) == len(nodes)


def test_pods_on_different_nodes_reach_each_other_from_their_nodes_ranges(
    core: Any, namespace: str, wait: Wait
) -> None:
    first, second = sorted(local_nodes(core), key=lambda n: n.metadata.name)[:2]
    core.create_namespaced_pod(namespace, body=pinned("server", SERVE, first.metadata.name, {}))
    server_ip = wait(
        lambda: core.read_namespaced_pod("server", namespace).status.pod_ip,
        timeout=60,
        what="the server's pod IP",
    )
    url = f"http://{server_ip}:8080/"
    core.create_namespaced_pod(
        namespace, body=pinned("client", FETCH, second.metadata.name, {"URL": url})
    )

    def fetched() -> bool:
        try:
            log = core.read_namespaced_pod_log("client", namespace, container="main")
        except Exception:
            return False
        return f"got {first.metadata.name}" in log

    wait(fetched, timeout=60, what="the client on one Node to reach the server on another")
    client_ip = core.read_namespaced_pod("client", namespace).status.pod_ip
    assert ipaddress.ip_address(server_ip) in ipaddress.ip_network(first.spec.pod_cidr)
    assert ipaddress.ip_address(client_ip) in ipaddress.ip_network(second.spec.pod_cidr)


def test_a_claims_volume_is_made_on_its_pods_node_and_bound_there(
    core: Any, namespace: str, wait: Wait
) -> None:
    node = sorted(n.metadata.name for n in local_nodes(core))[-1]
    core.create_namespaced_persistent_volume_claim(
        namespace,
        body={
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    # Waits for its first consumer: no volume before a pod is scheduled.
    claim = core.read_namespaced_persistent_volume_claim("data", namespace)
    assert claim.status.phase == "Pending"
    body = pinned(
        "writer", "import time; open('/data/x', 'w').write('1'); time.sleep(3600)", "", {}
    )
    del body["spec"]["nodeName"]
    body["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    body["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    core.create_namespaced_pod(namespace, body=body)
    wait(
        lambda: core.read_namespaced_pod("writer", namespace).status.phase == "Running",
        timeout=90,
        what="the writer to run",
    )
    claim = core.read_namespaced_persistent_volume_claim("data", namespace)
    volume = core.read_persistent_volume(claim.spec.volume_name)
    terms = volume.spec.node_affinity.required.node_selector_terms
    assert [e.values for t in terms for e in t.match_expressions] == [[node]]
    assert volume.spec.local.path
