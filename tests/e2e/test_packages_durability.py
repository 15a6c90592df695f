"""Durability on a real cluster with real node processes: the fleet's replication setting
(MarketplaceFleet `spec.replication`) reaches the nodes; two owners racing for one name on
two nodes end with one owner everywhere; acknowledged publishes reach the factor, and
`kubectl get mfleet` shows no package under-replicated; after `kill -9` of a node and the
deletion of its PersistentVolumeClaim, no package is lost and every one is back at its
factor on the node's new volume."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
    serving,
    token_of,
)
from test_policy_propagation import fleet as fleet  # noqa: PLC0414 - the shared fixture

PACKAGES = 100  # the "100 acknowledged publishes"
REPAIR_SECONDS = 120  # a repair pass (10 s) and the copies, on a loaded machine
FACTOR = 3  # the fleet's three nodes


def node_pid(ip: str) -> int:
    """The pid of the node process serving `ip` (the local kubelet runs it on this host)."""
    wanted = f"MARKETPLACE_NODE_HOST={ip}".encode()
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and b"marketplace-node" in (proc / "cmdline").read_bytes()
                and wanted in (proc / "environ").read_bytes().split(b"\0")
            ):
                return int(proc.name)
        except OSError:
            continue
    raise AssertionError(f"no node process serves {ip}")


def polite(ip: str, method: str, path: str) -> Any:
    """`call`, as a client that backs off on `429` does: the test reads under the fleet's
    default client limits, like anyone else."""
    while True:
        status, body = call(ip, method, path)
        if status != 429:
            return status, body
        time.sleep(1.0)


def at_factor(ips: list[str], package_ids: list[str], done: set[str]) -> bool:
    """Every package held (verified bytes on its own disk) by `FACTOR` of `ips`; `done`
    keeps those already seen there, so each round reads only the rest."""
    for package_id in package_ids:
        if package_id in done:
            continue
        views = [polite(ip, "GET", f"/api/v1/packages/{package_id}") for ip in ips]
        if sum(1 for status, view in views if status == 200 and view.get("local")) < FACTOR:
            return False
        done.add(package_id)
    return True


def content_ok(ip: str, i: int, package_id: str) -> bool:
    status, data = polite(ip, "GET", f"/api/v1/packages/{package_id}/content")
    return bool(status == 200 and data == f"durable payload {i}".encode())


def test_replication_setting_races_and_acknowledged_publishes_on_a_fleet(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, fleet: dict[str, str]
) -> None:
    kubectl("patch", "mfleet", FLEET, "-n", namespace, "--type=merge",
            "-p", '{"spec": {"replication": {"factor": 3, "minInSync": 2}}}')  # fmt: skip
    # A bulk publisher's fleet: the default publish limits (5/s per address, 2/s per author
    # key after a burst of 50) would answer this test's 100 publishes with 429. The `fetch`
    # limit stays at its default: copies between nodes have their own budget.
    bulk = {"rate": 500, "burst": 1000}
    apply(kubectl, namespace, ratelimitpolicy(
        "bulk", perPeer={"publish": bulk}, perPublisher=bulk))  # fmt: skip
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
    assert at_factor(ips, ids, set())  # every node holds the bytes on its own disk

    # kill -9 of a node and its claim deleted: the operator makes a new claim and pod.
    victim = "pc"
    os.kill(node_pid(fleet[victim]), signal.SIGKILL)
    kubectl("delete", "pvc", f"{victim}-data", "-n", namespace, "--wait=false")
    kubectl("delete", "pod", victim, "-n", namespace, "--grace-period=0", "--force")
    lost = time.monotonic()

    def back() -> list[str] | None:
        pod = kube.get(k8s.PODS, namespace, victim)
        ip = ((pod or {}).get("status") or {}).get("podIP")
        if ip is None or not serving(ip):
            return None
        return [*(fleet[n] for n in fleet if n != victim), ip]

    ips = wait_for(back, timeout=180, what="the node back on a new volume")
    done: set[str] = set()
    wait_for(lambda: at_factor(ips, ids, done) or None, timeout=REPAIR_SECONDS, interval=2.0,
             what="every package at factor 3")  # fmt: skip
    print(f"{PACKAGES} packages back at factor {FACTOR} {time.monotonic() - lost:.1f} s "
          "after the loss (the new pod's start included)")  # fmt: skip
    # None lost: the right bytes on the new volume too.
    assert [i for i, pid in enumerate(ids) if not content_ok(ips[-1], i, pid)] == []
