"""Fleet policy input on a real cluster: refused by the API server, refused by the operator,
and large (10,000 bans across five BanLists)."""

from __future__ import annotations

import functools
import time
from typing import Any

import pytest
import yaml
from e2e_helpers import Kubectl, wait_for
from marketplace_operator import k8s
from marketplace_operator.handlers.policy import BANLISTS, RATELIMITPOLICIES
from marketplace_protocol.identity import Identity
from peer_helpers import banned, peer_request
from test_policy_propagation import (
    FLEET,
    apply,
    banlist,
    configmap_version,
    everywhere,
    node_versions,
    ratelimitpolicy,
    served,
    token_of,
)
from test_policy_propagation import fleet as fleet  # noqa: PLC0414 - the shared fixture

PEER = "peerAAAAAAAA"


def _banlist_with(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "marketplace.p2p.dev/v1alpha1",
        "kind": "BanList",
        "metadata": {"name": "bad"},
        "spec": {"fleet": FLEET, "entries": list(entries)},
    }


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            _banlist_with({"peerId": PEER, "cidr": "10.0.0.0/8"}),
            "set exactly one of peerId, cidr",
        ),
        (_banlist_with({"reason": "nobody"}), "set exactly one of peerId, cidr"),
        (_banlist_with({"cidr": "10.0.0.300/8"}), "cidr must be a network in CIDR notation"),
        (_banlist_with({"cidr": "example.com"}), "cidr must be a network in CIDR notation"),
        (
            _banlist_with({"peerId": PEER, "duration": "1h", "expiresAt": "2030-01-01T00:00:00Z"}),
            "set at most one of duration and expiresAt",
        ),
        (_banlist_with({"peerId": PEER, "duration": "one hour"}), "spec.entries[0].duration"),
        (_banlist_with({"peerId": PEER, "duration": "87601h"}), "at most 3650 days"),
        (_banlist_with({"peerId": PEER, "duration": "0s"}), "more than 0s"),
        (
            {**_banlist_with(), "spec": {"fleet": "f" * 51, "entries": []}},
            "may not be more than 50",
        ),
        (_banlist_with({"peerId": PEER, "action": "maybe"}), "Unsupported value"),
        (_banlist_with({"peerId": "short"}), "spec.entries[0].peerId"),
        (
            _banlist_with(*({"peerId": f"peer{i:08d}"} for i in range(2001))),
            "must have at most 2000 items",
        ),
        (
            {**_banlist_with(), "spec": {"fleet": "Not_A_Fleet", "entries": []}},
            "spec.fleet",
        ),
        (
            ratelimitpolicy("bad", escalation={"firstBanSeconds": 100, "maxBanSeconds": 10}),
            "firstBanSeconds must not exceed maxBanSeconds",
        ),
        (
            ratelimitpolicy("bad", perPeer={"search": {"rate": 0, "burst": 1}}),
            "spec.perPeer.search.rate",
        ),
        (ratelimitpolicy("bad", perPeer={"search": {"rate": 1}}), "burst: Required value"),
        (ratelimitpolicy("bad", perPeer={"teleport": {"rate": 1, "burst": 1}}), "teleport"),
        (ratelimitpolicy("bad", priority=5000), "spec.priority"),
    ],
)
def test_the_api_server_refuses_malformed_objects(
    kubectl: Kubectl, namespace: str, obj: dict[str, Any], message: str
) -> None:
    result = kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj), check=False
    )
    assert result.returncode != 0, f"accepted: {obj['spec']}"
    assert message in result.stderr, result.stderr


def test_limits_that_cannot_merge_change_nothing_and_are_reported(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, fleet: dict[str, str]
) -> None:
    peer = Identity.generate()
    apply(kubectl, namespace, banlist("e2e-ban", peer.peer_id))
    wait_for(everywhere(fleet, peer, banned), timeout=10, what="ban everywhere")
    token = token_of(kube, namespace)
    version = configmap_version(kube, namespace)
    wait_for(lambda: set(node_versions(fleet, token).values()) == {version}, timeout=10)

    # Each is valid alone; merged (field by field), firstBanSeconds 600 > maxBanSeconds 30.
    apply(
        kubectl,
        namespace,
        ratelimitpolicy("short-max", priority=10, escalation={"maxBanSeconds": 30}),
    )
    apply(kubectl, namespace, ratelimitpolicy("long-first", escalation={"firstBanSeconds": 600}))

    def refused(name: str) -> dict[str, Any] | None:
        obj = kube.get(RATELIMITPOLICIES, namespace, name)
        ready = {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions") or []}
        cond = ready.get("Ready")
        return cond if cond is not None and cond["status"] == "False" else None

    for name in ("short-max", "long-first"):
        cond = wait_for(functools.partial(refused, name), timeout=15, what=f"{name} Ready=False")
        assert cond["reason"] == "CannotApply"
        assert "firstBanSeconds must not exceed maxBanSeconds" in cond["message"]

    def event_posted() -> bool:
        events = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        return '"reason": "CannotApply"' in events and "long-first" in events

    wait_for(event_posted, timeout=10, what="a CannotApply Event")
    assert configmap_version(kube, namespace) == version
    assert set(node_versions(fleet, token).values()) == {version}
    assert all(banned(*peer_request(ip, peer)) for ip in fleet.values())

    kubectl("delete", "ratelimitpolicy", "short-max", "-n", namespace)
    wait_for(
        lambda: (configmap_version(kube, namespace) or 0) > (version or 0),
        timeout=10,
        what="the policy applies again once the conflict is gone",
    )


def test_ten_thousand_bans_across_five_banlists_propagate(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, fleet: dict[str, str]
) -> None:
    target = Identity.generate()
    lists = []
    for part in range(5):
        peers = [f"bulk{part}x{i:07d}" for i in range(2000)]
        if part == 4:
            peers[-1] = target.peer_id
        lists.append(banlist(f"bulk-{part}", *peers))
    assert wait_for(everywhere(fleet, target, served), timeout=10)
    started = time.monotonic()
    kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-",
        input=yaml.safe_dump_all(lists),
    )  # fmt: skip
    wait_for(everywhere(fleet, target, banned), timeout=60, interval=0.1, what="10k bans enforced")
    converged = time.monotonic() - started
    print(f"10,000 bans across 5 BanLists enforced on {len(fleet)} nodes in {converged:.2f}s")

    cm = kube.get(k8s.CONFIGMAPS, namespace, f"{FLEET}-policy")
    assert cm is not None
    assert "policy.json.gz" in (cm.get("binaryData") or {})
    assert "policy.json" not in (cm.get("data") or {})
    assert len(cm["binaryData"]["policy.json.gz"]) < 1024 * 1024
    for part in range(5):
        obj = kube.get(BANLISTS, namespace, f"bulk-{part}")
        assert obj is not None
        annotations = obj["metadata"].get("annotations") or {}
        assert not any("last-handled" in k or "last-applied" in k for k in annotations)
    assert converged < 30
