"""Fleet policy on a real cluster with real node processes: bans, limits, auto bans, versions.

Every request from "a peer" here is a real signed peer-protocol request
(`GET /p2p/v1/changes`, the gossip operation) from a fresh Ed25519 identity,
sent to each node's pod IP; enforcement is what the nodes answer.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import urllib3
import yaml
from e2e_helpers import Kubectl, OperatorProcess, wait_for
from marketplace_operator import k8s
from marketplace_operator.handlers.policy import BANLISTS
from marketplace_protocol.identity import Identity
from peer_helpers import HTTP, banned, peer_request

FLEET = "blue"
NODES = ["pa", "pb", "pc"]


# --- helpers ------------------------------------------------------------------------------


def admin(ip: str, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    resp = HTTP.request(
        method,
        f"http://{ip}:9070/admin/v1/{path}",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        body=None if body is None else json.dumps(body).encode(),
        timeout=5.0,
        retries=False,
    )
    return resp.status, json.loads(resp.data) if resp.data else None


def pod_ips(kube: k8s.BlockingKube, namespace: str) -> dict[str, str]:
    ips = {}
    for name in NODES:
        pod = kube.get(k8s.PODS, namespace, name)
        ip = ((pod or {}).get("status") or {}).get("podIP")
        if pod is not None and ip and not pod["metadata"].get("deletionTimestamp"):
            ips[name] = ip
    return ips


def serving(ip: str) -> bool:
    try:
        return (
            HTTP.request("GET", f"http://{ip}:9070/healthz", timeout=1.0, retries=False).status
            == 200
        )
    except urllib3.exceptions.HTTPError:
        return False


TRANSIENT = ("timeout", "Timeout", "connection refused", "unable to handle", "etcdserver")


def apply(kubectl: Kubectl, namespace: str, obj: dict[str, Any], *, attempts: int = 3) -> None:
    """Server-side apply; retried when the (shared, loaded) API server times out."""
    for attempt in range(attempts):
        done = kubectl(
            "apply", "--server-side", "-n", namespace, "-f", "-",
            input=yaml.safe_dump(obj), check=False,
        )  # fmt: skip
        if done.returncode == 0:
            return
        if attempt == attempts - 1 or not any(t in done.stderr for t in TRANSIENT):
            pytest.fail(f"kubectl apply failed: {done.stderr}")
        time.sleep(1)


def banlist(name: str, *peers: str, fleet: str = FLEET) -> dict[str, Any]:
    return {
        "apiVersion": "marketplace.p2p.dev/v1alpha1",
        "kind": "BanList",
        "metadata": {"name": name},
        "spec": {"fleet": fleet, "entries": [{"peerId": p, "reason": "e2e"} for p in peers]},
    }


def ratelimitpolicy(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "marketplace.p2p.dev/v1alpha1",
        "kind": "RateLimitPolicy",
        "metadata": {"name": name},
        "spec": {"fleet": FLEET, **spec},
    }


def token_of(kube: k8s.BlockingKube, namespace: str) -> str:
    secret = kube.get(k8s.SECRETS, namespace, f"{FLEET}-admin")
    assert secret is not None
    return base64.b64decode(secret["data"]["token"]).decode()


def configmap_version(kube: k8s.BlockingKube, namespace: str) -> int | None:
    cm = kube.get(k8s.CONFIGMAPS, namespace, f"{FLEET}-policy")
    raw = ((cm or {}).get("metadata", {}).get("annotations") or {}).get(
        "marketplace.p2p.dev/policy-version"
    )
    return int(raw) if raw else None


def node_versions(ips: dict[str, str], token: str) -> dict[str, int | None]:
    out = {}
    for name, ip in ips.items():
        status, body = admin(ip, token, "GET", "status")
        out[name] = body.get("policyVersion") if status == 200 else None
    return out


def everywhere(
    ips: dict[str, str], ident: Identity, want: Callable[[int, str | None], bool]
) -> Callable[[], bool]:
    def probe() -> bool:
        return all(want(*peer_request(ip, ident)) for ip in ips.values())

    return probe


def served(status: int, code: str | None) -> bool:
    return status == 200


# --- the fleet ------------------------------------------------------------------------------


@pytest.fixture
def fleet(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> dict[str, str]:
    """Three MarketplaceNodes of fleet `blue`, every node process serving; their pod IPs."""
    for name in NODES:
        apply(
            kubectl,
            namespace,
            {
                "apiVersion": "marketplace.p2p.dev/v1alpha1",
                "kind": "MarketplaceNode",
                "metadata": {"name": name},
                "spec": {"fleet": FLEET},
            },
        )

    def up() -> dict[str, str] | None:
        ips = pod_ips(kube, namespace)
        return ips if len(ips) == len(NODES) and all(serving(ip) for ip in ips.values()) else None

    ips = wait_for(up, timeout=180, what="three serving node processes")
    wait_for(lambda: configmap_version(kube, namespace), timeout=60, what="a first policy version")
    return ips


# --- scenarios ------------------------------------------------------------------------------


def test_a_banlist_reaches_every_node_and_deleting_it_restores(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, fleet: dict[str, str]
) -> None:
    peer = Identity.generate()
    assert wait_for(everywhere(fleet, peer, served), timeout=10, what="the peer served")

    started = time.monotonic()
    apply(kubectl, namespace, banlist("e2e-ban", peer.peer_id))
    wait_for(everywhere(fleet, peer, banned), timeout=10, interval=0.05, what="banned everywhere")
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"propagation took {elapsed:.2f}s"

    def converged() -> dict[str, Any] | None:
        obj = kube.get(BANLISTS, namespace, "e2e-ban")
        status = (obj or {}).get("status") or {}
        return obj if status.get("convergedNodes") == "3/3" else None

    obj = wait_for(converged, timeout=30, what="BanList status 3/3")
    conditions = {c["type"]: c for c in obj["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["PolicyConverged"]["status"] == "True"
    assert obj["status"]["fleetPolicyVersion"] == configmap_version(kube, namespace)
    assert obj["status"]["entries"] == 1
    # No kopf diff-base annotation on a BanList: nothing grows with the list.
    assert not any("last-handled" in k for k in obj["metadata"].get("annotations") or {})

    kubectl("delete", "banlist", "e2e-ban", "-n", namespace)
    wait_for(everywhere(fleet, peer, served), timeout=10, interval=0.05, what="served again")


def test_a_ratelimitpolicy_changes_the_nodes_429s(
    kubectl: Kubectl, namespace: str, fleet: dict[str, str]
) -> None:
    ip = next(iter(fleet.values()))
    before = Identity.generate()
    assert [peer_request(ip, before)[0] for _ in range(6)] == [200] * 6

    apply(
        kubectl,
        namespace,
        ratelimitpolicy(
            "e2e-strict",
            perPeer={"gossip": {"rate": 0.2, "burst": 2}},
            escalation={"threshold": 1000},  # limit only, no ban in this test
        ),
    )

    def limited() -> bool:
        probe = Identity.generate()
        answers = [peer_request(address, probe) for address in fleet.values() for _ in range(3)]
        per_node = [answers[i : i + 3] for i in range(0, len(answers), 3)]
        return all(
            [s for s, _ in node] == [200, 200, 429] and node[2][1] == "rate_limited"
            for node in per_node
        )

    wait_for(limited, timeout=10, interval=0.1, what="burst 2 then 429 on every node")

    kubectl("delete", "ratelimitpolicy", "e2e-strict", "-n", namespace)

    def defaults_back() -> bool:
        fresh = Identity.generate()  # a fresh peer: no bucket state from the strict limits
        return [peer_request(ip, fresh)[0] for _ in range(4)] == [200] * 4

    wait_for(defaults_back, timeout=10, what="node defaults back")


def test_a_node_down_during_a_change_has_the_policy_when_it_returns(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, fleet: dict[str, str]
) -> None:
    first, second = Identity.generate(), Identity.generate()
    apply(kubectl, namespace, banlist("e2e-ban", first.peer_id))
    wait_for(everywhere(fleet, first, banned), timeout=10, what="first ban everywhere")

    kubectl("delete", "pod", "pc", "-n", namespace, "--wait=true", "--timeout=60s")
    before = configmap_version(kube, namespace) or 0
    apply(kubectl, namespace, banlist("e2e-ban", first.peer_id, second.peer_id))
    wait_for(
        lambda: (configmap_version(kube, namespace) or 0) > before,
        timeout=10,
        what="the new version in the ConfigMap while pc is down",
    )
    current = configmap_version(kube, namespace)

    def back() -> dict[str, str] | None:
        ips = pod_ips(kube, namespace)
        return ips if "pc" in ips and serving(ips["pc"]) else None

    ips = wait_for(back, timeout=120, what="pc serving again")
    token = token_of(kube, namespace)
    wait_for(
        lambda: node_versions({"pc": ips["pc"]}, token)["pc"] == current,
        timeout=10,
        what="pc on the current version",
    )
    assert banned(*peer_request(ips["pc"], second))
    assert banned(*peer_request(ips["pc"], first))


def test_an_older_version_is_refused_by_the_node(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, fleet: dict[str, str]
) -> None:
    peer = Identity.generate()
    apply(kubectl, namespace, banlist("e2e-ban", peer.peer_id))
    wait_for(everywhere(fleet, peer, banned), timeout=10, what="ban everywhere")
    token = token_of(kube, namespace)
    ip = fleet["pa"]
    current = node_versions({"pa": ip}, token)["pa"]
    assert current is not None
    assert current >= 2
    status, body = admin(ip, token, "PUT", "policy", {"version": current - 1, "bans": []})
    assert status == 409
    assert body["code"] == "stale_policy"
    assert banned(*peer_request(ip, peer))  # the old (empty) policy did not take effect


def test_a_local_ban_protects_the_whole_fleet_with_provenance(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, fleet: dict[str, str]
) -> None:
    apply(
        kubectl,
        namespace,
        ratelimitpolicy(
            "e2e-escalate",
            perPeer={"gossip": {"rate": 0.5, "burst": 1}},
            escalation={"threshold": 3, "windowSeconds": 60, "firstBanSeconds": 300},
        ),
    )
    abuser = Identity.generate()
    victim, *others = list(fleet.items())

    def limits_in_force() -> bool:
        probe = Identity.generate()
        return [peer_request(victim[1], probe)[0] for _ in range(2)] == [200, 429]

    wait_for(limits_in_force, timeout=10, what="the strict limits on the victim node")

    def locally_banned() -> bool:
        return banned(*peer_request(victim[1], abuser))

    wait_for(locally_banned, timeout=20, interval=0.05, what="the victim node's own ban")
    started = time.monotonic()
    # Probe the other nodes no faster than their limit (0.5/s), so that they never see a
    # violation and ban on their own: what refuses the abuser there is the fleet ban.
    others_ips = dict(others)
    wait_for(everywhere(others_ips, abuser, banned), timeout=15, interval=2.5, what="fleet ban")
    spread = time.monotonic() - started

    auto = kubectl("get", "banlist", f"{FLEET}-auto", "-n", namespace, "-o", "yaml").stdout
    obj = yaml.safe_load(auto)
    (entry,) = [e for e in obj["spec"]["entries"] if e.get("peerId") == abuser.peer_id]
    provenance = entry["provenance"]
    assert provenance["nodes"] == [victim[0]]
    assert provenance["offences"] >= 1
    assert provenance["firstSeen"]
    assert provenance["reasons"]
    assert entry["expiresAt"]
    assert spread < 10, f"spreading the local ban took {spread:.1f}s"
    # Only the victim decided it; the others refuse because of the fleet-wide entry.
    for name, ip in others:
        assert banned(*peer_request(ip, abuser)), name


def test_sigkill_between_changes_never_moves_a_node_backwards(
    kube: k8s.BlockingKube,
    kubectl: Kubectl,
    namespace: str,
    fleet: dict[str, str],
    operator: OperatorProcess,
) -> None:
    token = token_of(kube, namespace)
    seen: dict[str, list[int]] = {name: [] for name in fleet}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for name, version in node_versions(fleet, token).items():
                if version is not None:
                    seen[name].append(version)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        identities = [Identity.generate() for _ in range(3)]
        for round_, ident in enumerate(identities, start=1):
            peers = [i.peer_id for i in identities[:round_]]
            apply(kubectl, namespace, banlist("e2e-ban", *peers))
            wait_for(everywhere(fleet, ident, banned), timeout=15, what=f"round {round_} bans")
            operator.kill()
            operator.start()
        # A restart with no change keeps the version (no needless bump, no going back).
        version = configmap_version(kube, namespace)
        operator.kill()
        operator.start()
        time.sleep(2)
        assert configmap_version(kube, namespace) == version
        for ident in identities:
            assert wait_for(everywhere(fleet, ident, banned), timeout=10, what="still banned")
    finally:
        stop.set()
        watcher.join(5)
    for name, versions in seen.items():
        assert versions, f"no version seen on {name}"
        assert versions == sorted(versions), f"{name} went backwards: {versions}"
