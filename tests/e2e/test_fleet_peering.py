"""Peers beyond the fleet (#14 item 7): two fleets in two namespaces, one operator watching
both. They peer when each allows the other's addresses (MarketplaceFleet
`spec.peering`), a node outside the allowed networks is refused with the typed code
`peer_not_allowed`, and a banned node of the other fleet stays out although allowed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import real_node
from e2e_helpers import OperatorProcess, custom_body, mnode_body, wait_for, wait_ready
from marketplace_operator import k8s
from marketplace_operator.handlers.policy import BANLISTS
from marketplace_protocol.identity import Identity
from peer_helpers import peer_request
from pod_client import pod_source

EAST, WEST = "east", "west"
UNREACHABLE = "192.0.2.0/24"  # TEST-NET-1: no pod is there
pytestmark = pytest.mark.skipif(
    real_node.ON_REAL_NODE,
    reason="sends from pods (pod_client.py), whose namespaces the real Node names its own way",
)


def _status(kube: k8s.BlockingKube, namespace: str, name: str) -> dict[str, Any]:
    return dict((kube.get(k8s.MNODES, namespace, name) or {}).get("status") or {})


def _peering(kube: k8s.BlockingKube, namespace: str, fleet: str, **peering: Any) -> None:
    kube.patch(k8s.FLEETS, namespace, fleet, {"spec": {"peering": peering}})


def _connected(kube: k8s.BlockingKube, namespace: str, name: str) -> set[str]:
    return set(_status(kube, namespace, name).get("connectedPeers") or [])


def test_two_fleets_peer_when_allowed_refuse_when_not_and_a_ban_wins(
    kube: k8s.BlockingKube,
    namespace: str,
    other_namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    east, west = namespace, other_namespace
    operator_factory("--namespace", west).start()
    # Both fleets start with peering on and nothing allowed: members only.
    kube.create(k8s.FLEETS, custom_body("MarketplaceFleet", EAST, east, peering={}))
    kube.create(k8s.FLEETS, custom_body("MarketplaceFleet", WEST, west, peering={}))
    kube.create(k8s.MNODES, mnode_body("e0", east, fleet=EAST))
    for name in ("w0", "w1"):
        kube.create(k8s.MNODES, mnode_body(name, west, fleet=WEST))
    e0 = wait_ready(kube, east, ["e0"])[0]["status"]
    w0, w1 = (n["status"] for n in wait_ready(kube, west, ["w0", "w1"]))
    wait_for(
        lambda: _connected(kube, west, "w0") == {w1["peerId"]},
        timeout=60,
        what="west's members to peer (members need no allowance)",
    )
    e0_ip, w0_ip, w1_ip = e0["podIP"], w0["podIP"], w1["podIP"]
    seed = f"http://{w0_ip}:7070"
    # A west node's own requests, made from its own pod (its address, its network).
    from_w0, from_w1 = (pod_source(kube.get(k8s.PODS, west, n) or {}) for n in ("w0", "w1"))

    # West allows east; east greets w0 but allows nothing of west's: refused, typed.
    _peering(kube, west, WEST, allowedNetworks=[f"{e0_ip}/32"])
    _peering(kube, east, EAST, allowedNetworks=[UNREACHABLE], seeds=[seed])
    wait_for(
        lambda: (
            peer_request(e0_ip, Identity.generate(), source=from_w0) == (403, "peer_not_allowed")
        ),
        timeout=60,
        what="east to refuse a west node (peer_not_allowed)",
    )
    assert _connected(kube, east, "e0") == set()

    # Allowed both ways: e0 peers with w0 (its seed) and w1 (by peer exchange).
    _peering(kube, east, EAST, allowedNetworks=[f"{w0_ip}/32", f"{w1_ip}/32"], seeds=[seed])
    both = {w0["peerId"], w1["peerId"]}
    wait_for(
        lambda: _connected(kube, east, "e0") == both,
        timeout=60,
        what="e0 to peer with both west nodes",
    )
    wait_for(
        lambda: e0["peerId"] in _connected(kube, west, "w0"),
        timeout=60,
        what="w0 to list e0 among its peers",
    )
    assert peer_request(e0_ip, Identity.generate(), source=from_w1)[0] == 200

    # A ban of w1 in east's fleet wins over the allowance: refused, dropped, kept out.
    kube.create(
        BANLISTS,
        custom_body(
            "BanList",
            "no-w1",
            east,
            fleet=EAST,
            entries=[
                {"peerId": w1["peerId"], "reason": "abuse"},
                {"cidr": f"{w1_ip}/32", "reason": "abuse"},
            ],
        ),
    )
    wait_for(
        lambda: peer_request(e0_ip, Identity.generate(), source=from_w1) == (403, "peer_banned"),
        timeout=60,
        what="east to refuse the banned west node (peer_banned)",
    )
    wait_for(
        lambda: _connected(kube, east, "e0") == {w0["peerId"]},
        timeout=60,
        what="e0 to drop the banned w1 and keep w0",
    )
