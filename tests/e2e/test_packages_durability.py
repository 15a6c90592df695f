"""Durability on a real cluster with real node processes: the fleet's replication setting
(MarketplaceFleet `spec.replication`) reaches the nodes; two owners racing for one name on
two nodes end with one owner everywhere; acknowledged publishes reach the factor, and
`kubectl get mfleet` shows no package under-replicated.

Not here yet (docs/packages.md): `kill -9` of a node with the deletion of its claim. On this
cluster the restarted node (new pod IP, same identity, empty volume) did not catch up the
catalogue by anti-entropy within minutes, so its peers' repairs answered 404; loopback
processes restarted on a new port do catch up (tests/integration/node/test_node_replication.py).
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

from e2e_helpers import Kubectl, wait_for
from marketplace_operator import k8s
from marketplace_protocol.identity import Identity
from test_packages_takedown import call, publish
from test_policy_propagation import (
    FLEET,
    apply,
    configmap_version,
    node_versions,
    ratelimitpolicy,
    token_of,
)
from test_policy_propagation import fleet as fleet  # noqa: PLC0414 - the shared fixture

PACKAGES = 30
REPAIR_SECONDS = 120  # a repair pass (10 s) and the copies, on a loaded machine


def test_replication_setting_races_and_acknowledged_publishes_on_a_fleet(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, fleet: dict[str, str]
) -> None:
    kubectl("patch", "mfleet", FLEET, "-n", namespace, "--type=merge",
            "-p", '{"spec": {"replication": {"factor": 3, "minInSync": 2}}}')  # fmt: skip
    # A bulk publisher's fleet: the default limits (publish 5/s per address, 2/s per author
    # key after a burst of 50, fetch 20/s per peer, which the copies between nodes count
    # against) would answer this test's publishes in a few seconds with 429 and 503.
    bulk = {"rate": 500, "burst": 1000}
    apply(kubectl, namespace, ratelimitpolicy(
        "bulk", perPeer={"publish": bulk, "fetch": bulk}, perPublisher=bulk))  # fmt: skip
    token = token_of(kube, namespace)

    def policy_everywhere() -> bool:
        cm = kube.get(k8s.CONFIGMAPS, namespace, f"{FLEET}-policy")
        text = ((cm or {}).get("data") or {}).get("policy.json") or ""
        if '"replication":{"factor":3,"minInSync":2}' not in text or "perPublisher" not in text:
            return False
        version = configmap_version(kube, namespace)
        return all(v == version for v in node_versions(fleet, token).values())

    wait_for(policy_everywhere, timeout=60, what="the fleet's replication and limits everywhere")

    # Two owners race for one name on two nodes: one owner everywhere.
    ips = list(fleet.values())
    racers = Identity.generate(), Identity.generate()
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(
            lambda i: publish(ips[i], racers[i], "raced-name", "1.0.0", f"racer {i}".encode()),
            range(2),
        ))  # fmt: skip
    assert any(status == 201 for status, _ in answers), answers

    def owners() -> set[str] | None:
        seen = {tuple(call(ip, "GET", "/api/v1/names/raced-name")[1]["owners"]) for ip in ips}
        return None if len(seen) != 1 or not next(iter(seen)) else set(next(iter(seen)))

    settled = wait_for(owners, timeout=60, what="one owner of raced-name on every node")
    assert len(settled) == 1
    assert settled <= {r.peer_id for r in racers}

    # Acknowledged publishes, spread over the nodes; a 503 (too few in-sync copies, which a
    # loaded machine's timeouts cause) is retried as a client does: the identical publish.
    author = Identity.generate()

    def one(i: int) -> str:
        for _ in range(5):
            status, view = publish(ips[i % len(ips)], author, f"durable-{i}", "1.0.0",
                                   f"durable payload {i}".encode())  # fmt: skip
            if status != 503:
                break
            time.sleep(1)
        assert status in {200, 201}, view
        return str(view["id"])

    with ThreadPoolExecutor(3) as pool:
        ids = list(pool.map(one, range(PACKAGES)))

    def under_replicated() -> int | None:
        obj = kube.get(k8s.FLEETS, namespace, FLEET)
        return ((obj or {}).get("status") or {}).get("underReplicated")

    wait_for(lambda: under_replicated() == 0 or None, timeout=REPAIR_SECONDS,
             what="kubectl get mfleet: no package under-replicated")  # fmt: skip
    shown = kubectl("get", "mfleet", FLEET, "-n", namespace).stdout.splitlines()
    column = shown[0].index("UNDER-REPLICATED")  # kubectl aligns its columns
    assert shown[1][column:].split()[0] == "0", shown
    for i, pid in enumerate(ids):  # every node holds and serves the right bytes
        for ip in ips:
            assert call(ip, "GET", f"/api/v1/packages/{pid}")[1]["local"] is True
            status, data = call(ip, "GET", f"/api/v1/packages/{pid}/content")
            assert status == 200
            assert hashlib.sha256(data).digest() == hashlib.sha256(
                f"durable payload {i}".encode()).digest()  # fmt: skip
