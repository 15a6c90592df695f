"""Reaching a node from outside: which node, which route, which query."""

from __future__ import annotations

import base64
import ipaddress
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from marketplace_kubectl import nodeaccess
from marketplace_node import tls
from marketplace_operator import certs
from marketplace_operator.render import names

from . import objects as o


def test_pick_prefers_the_named_node_else_the_first_ready_of_the_fleet() -> None:
    nodes = [o.mnode("c"), o.mnode("b", ready="False"), o.mnode("a", fleet="other"), o.mnode("d")]
    assert nodes[0]["metadata"]["name"] == "c"
    assert nodeaccess.pick(nodes, node=None, fleet="demo") == "c"
    assert nodeaccess.pick(nodes, node=None, fleet=None) == "a"
    assert nodeaccess.pick(nodes, node="b", fleet=None) == "b"
    with pytest.raises(nodeaccess.NodeAccessError, match="not found"):
        nodeaccess.pick(nodes, node="zz", fleet=None)
    with pytest.raises(nodeaccess.NodeAccessError, match="no Ready MarketplaceNode in fleet x"):
        nodeaccess.pick(nodes, node=None, fleet="x")


@pytest.mark.parametrize(
    ("ip", "local"),
    [("127.16.0.4", True), ("::1", True), ("10.244.1.7", False), (None, False), ("junk", False)],
)
def test_loopback_pods_are_reached_directly(
    ip: str | None, local: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nodeaccess, "_routes", lambda: "")  # this machine's links aside
    assert nodeaccess.Endpoint("ns", "p", ip, 7070).local is local


# /proc/net/route: the default route via 192.0.2.1, the LAN 192.0.2.0/24 and a pod bridge
# 10.23.0.0/16 on links, 10.50.0.0/16 through a gateway.
ROUTES = """Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
mfp-1\t0000170A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t0000320A\t010200C0\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0
"""


@pytest.mark.parametrize(
    ("ip", "direct"),
    [("10.23.16.2", True), ("192.0.2.77", True), ("10.50.0.9", False), ("8.8.8.8", False),
     ("10.24.0.1", False), ("fd00::1", False)],
)  # fmt: skip
def test_pods_on_a_link_of_this_machine_are_reached_directly(ip: str, direct: bool) -> None:
    # Not through the default route nor a gateway: those go through port-forward.
    assert nodeaccess.on_link(ipaddress.ip_address(ip), ROUTES) is direct
    assert nodeaccess.on_link(ipaddress.ip_address(ip), "") is False


def test_endpoint_from_the_mnode() -> None:
    node = o.mnode("a")
    node["spec"]["p2p"] = {"port": 8080}
    assert nodeaccess.endpoint(node) == nodeaccess.Endpoint("ns", "a", "10.0.0.1", 8080)


def test_port_forward_output_is_read_for_the_local_port() -> None:
    assert nodeaccess.forwarded_port("Forwarding from 127.0.0.1:40123 -> 7070\n") == 40123
    assert nodeaccess.forwarded_port("Forwarding from [::1]:40123 -> 7070") is None
    assert nodeaccess.forwarded_port("Handling connection for 40123") is None


def test_search_query_repeats_words_and_tags_as_the_node_cli_does() -> None:
    query = nodeaccess.search_query(["a", "b c"], tags=["t1", "t2"], category="tools", limit=5)
    assert urllib.parse.parse_qsl(query) == [
        ("q", "a"),
        ("q", "b c"),
        ("tag", "t1"),
        ("tag", "t2"),
        ("category", "tools"),
        ("limit", "5"),
    ]
    assert nodeaccess.search_query([], tags=[], category=None, limit=None) == ""


def test_result_rows() -> None:
    page = {
        "results": [
            {
                "id": "i1",
                "downloads": 3,
                "providers": 2,
                "package": {"name": "n", "version": "1.0.0", "category": "tools"},
            }
        ]
    }
    assert nodeaccess.result_rows(page) == [["n", "1.0.0", "tools", "3", "2", "i1"]]


def _tls_pod(*, scheme: str = "https", volumes: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": "n1", "annotations": {names.TLS_SCHEME_ANNOTATION: scheme}},
        "spec": {
            "containers": [
                {"env": [{"name": "MARKETPLACE_NODE_TLS_PEER_NAME", "value": "blue.ns.svc"}]}
            ],
            "volumes": [{"name": "tls", "secret": {"secretName": "n1-tls"}}] if volumes else [],
        },
    }


def test_a_pod_serving_https_names_its_ca_secret_and_the_fleet_name() -> None:
    assert nodeaccess.pod_tls(_tls_pod()) == nodeaccess.PodTls("n1-tls", "blue.ns.svc")
    assert nodeaccess.pod_tls(_tls_pod(scheme="http")) is None
    assert nodeaccess.pod_tls(None) is None
    with pytest.raises(nodeaccess.NodeAccessError, match="names no CA"):
        nodeaccess.pod_tls(_tls_pod(volumes=False))


def test_the_ca_comes_from_the_certificate_secret() -> None:
    ca = certs.new_ca("fleet", now=datetime.now(UTC), valid=timedelta(days=1))
    secret = {"data": {"ca.crt": base64.b64encode(ca.cert_pem).decode()}}
    found = nodeaccess.PodTls("n1-tls", "blue.ns.svc")
    context = nodeaccess.context_for(found, secret)
    assert isinstance(context, tls.NamedContext)
    assert context.server_name == "blue.ns.svc"
    assert len(context.get_ca_certs()) == 1
    end = nodeaccess.endpoint(o.mnode("n1"), context=context)
    assert end.scheme == "https"
    with pytest.raises(nodeaccess.NodeAccessError, match=r"no ca\.crt"):
        nodeaccess.context_for(found, {"data": {}})
