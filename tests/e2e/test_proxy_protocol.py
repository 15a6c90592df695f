"""PROXY protocol v2 on a node's public listener, set as a user would (the
MarketplaceNode's `spec.template.container.env`): a trusted balancer's header names the
client, and a BanList of the client's address follows it; the same header from any
other address is a malformed request (400), so a banned client cannot forge its way in.
The balancer and the stranger are pods of their own, so the node sees their real
addresses under either pod network (pod_client.py)."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import real_node
from e2e_helpers import OperatorProcess, custom_body, mnode_body, wait_for, wait_ready
from marketplace_node import proxyv2
from marketplace_operator import k8s
from marketplace_operator.handlers.policy import BANLISTS
from pod_client import PodSource, pod_source

BANNED, CLIENT = "203.0.113.50", "203.0.113.51"
REQUEST = b"GET /api/v1/search?q=x HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n"
pytestmark = pytest.mark.skipif(
    real_node.ON_REAL_NODE,
    reason="sends from pods (pod_client.py), whose namespaces the real Node names its own way",
)


def _idle_pod(name: str, namespace: str) -> dict[str, Any]:
    container = {"name": "idle", "image": "busybox", "command": ["sleep", "3600"]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 0},
    }


def _running(kube: k8s.BlockingKube, namespace: str, name: str) -> dict[str, Any] | None:
    pod = kube.get(k8s.PODS, namespace, name) or {}
    status = pod.get("status") or {}
    return pod if status.get("phase") == "Running" and status.get("podIP") else None


def _status(pod_ip: str, source: PodSource, client: str | None) -> int:
    """The status line's code for a search sent from the pod `source`, after a v2 header
    naming `client` when given."""
    header = b"" if client is None else proxyv2.build((client, 40000), (pod_ip, 7070))
    with source.connect((pod_ip, 7070)) as s:
        s.sendall(header + REQUEST)
        line = s.makefile("rb").readline()
    return int(line.split()[1])


def test_a_trusted_balancers_header_names_the_client_and_a_forged_one_is_refused(
    kube: k8s.BlockingKube, namespace: str, operator: OperatorProcess
) -> None:
    for name in ("balancer", "stranger"):
        kube.create(k8s.PODS, _idle_pod(name, namespace))
    balancer, stranger = (
        pod_source(wait_for(functools.partial(_running, kube, namespace, n), timeout=60, what=n))
        for n in ("balancer", "stranger")
    )
    env = [
        {"name": "MARKETPLACE_NODE_TRUSTED_PROXIES", "value": f"{balancer.address}/32"},
        {"name": "MARKETPLACE_NODE_PROXY_PROTOCOL", "value": "true"},
    ]
    kube.create(k8s.MNODES, mnode_body("pp", namespace, template={"container": {"env": env}}))
    pod_ip = wait_ready(kube, namespace, ["pp"])[0]["status"]["podIP"]
    assert _status(pod_ip, balancer, CLIENT) == 200
    assert _status(pod_ip, balancer, None) == 200  # the balancer's own health check

    kube.create(
        BANLISTS,
        custom_body("BanList", "abusers", namespace, entries=[{"cidr": f"{BANNED}/32"}]),
    )
    wait_for(
        lambda: _status(pod_ip, balancer, BANNED) == 403,
        timeout=60,
        what="the ban of the client the balancer names",
    )
    assert _status(pod_ip, balancer, CLIENT) == 200  # only that client
    assert _status(pod_ip, stranger, CLIENT) == 400  # not a trusted proxy: never a header
    assert _status(pod_ip, stranger, None) == 200
