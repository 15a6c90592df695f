"""Copies on five real nodes: a 201 means minInSync nodes hold the bytes; a node killed
with its disk lost is repaired back to the factor; too few live nodes get a typed 503."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from marketplace_node import sealing
from marketplace_node.model import PackageDraft
from marketplace_protocol import identity

from tests.support import reading
from tests.support.node_processes import NODE_ERRORS, Node, NodeCluster, http
from tests.support.poll import wait_for

PACKAGES = 12


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NodeCluster]:
    started = NodeCluster.start(tmp_path, 5)
    for node in started.nodes:  # a node keeps its key when it loses its disk (an identity Secret)
        node.env["MARKETPLACE_NODE_IDENTITY_FILE"] = str(tmp_path / f"identity{node.index}.pem")
        node.kill()
        shutil.rmtree(node.data_dir)
        node.start()
    try:
        for node in started.nodes:
            node.wait_listening()
        started.wait_meshed()
        yield started
    finally:
        started.close()


def publish(node: Node, author: identity.Identity, name: str) -> tuple[int, dict[str, object]]:
    data = f"{name} bytes".encode()
    digest = hashlib.sha256(data).hexdigest()
    assert http("PUT", f"{node.url}/api/v1/blobs/{digest}", data)[0] == 201
    draft = PackageDraft(name=name, version="1.0.0", category="t", digest=digest, size=len(data))
    meta = sealing.sign_package(author, draft, created=int(time.time()))
    status, body = http(
        "POST",
        f"{node.url}/api/v1/packages",
        meta.model_dump_json(by_alias=True).encode(),
        {"Content-Type": "application/json"},
    )
    return status, json.loads(body)


def holds(node: Node, package_id: str) -> bool:
    """The node holds the bytes on disk (`local`); one that has not heard of it yet does not."""
    status, body = http("GET", f"{node.url}/api/v1/packages/{package_id}")
    if status == 404:
        return False
    assert status == 200, (node.index, status, body[:200])
    return bool(json.loads(body).get("local"))


def holders(nodes: list[Node], package_id: str) -> int:
    return sum(1 for n in nodes if holds(n, package_id))


def test_acknowledged_publishes_survive_a_node_and_its_disk(cluster: NodeCluster) -> None:
    author = identity.Identity.generate()
    nodes = cluster.nodes
    ids = []
    for i in range(PACKAGES):
        status, view = publish(nodes[i % 5], author, f"durable{i}")
        assert status == 201, view
        ids.append(str(view["id"]))
        assert holders(nodes, ids[-1]) >= 2  # minInSync (default 2) held it at the 201

    def at_factor(done: set[str]) -> bool:
        """Every package on 3 nodes' disks. `done` keeps those seen there (copies stay), so
        a round reads only the rest and stops at the first short one: within the nodes'
        default `search` limit (50/s per address), as `reading.Everywhere` explains."""
        for pid in ids:
            if pid not in done and holders(nodes, pid) < 3:
                return False
            done.add(pid)
        return True

    factor: set[str] = set()
    wait_for(lambda: at_factor(factor), timeout=60, what="factor 3 for all", ignoring=NODE_ERRORS)
    victim = max(nodes, key=lambda n: sum(holders([n], pid) for pid in ids))
    victim.kill()  # kill -9, then its disk is gone, and it is back at once: records its old
    shutil.rmtree(victim.data_dir)  # incarnation made in its last second are taken back
    started = time.monotonic()
    victim.start()
    victim.wait_listening()
    repaired: set[str] = set()
    wait_for(
        lambda: at_factor(repaired), timeout=90, what="repair to factor 3", ignoring=NODE_ERRORS
    )
    print(f"repair of {PACKAGES} packages after a lost disk: {time.monotonic() - started:.1f} s")

    # Nothing lost: every acknowledged package is served everywhere, the reborn node
    # included once its anti-entropy pulls have brought its catalogue back (a 404 until then).
    def read(index: int, pid: str) -> tuple[int, bytes]:
        return http("GET", f"{nodes[index].url}/api/v1/packages/{pid}/content")

    everywhere = reading.Everywhere(read, [n.index for n in nodes], ids)
    try:
        wait_for(
            everywhere, timeout=60, what="every package served by every node", ignoring=NODE_ERRORS
        )
    except pytest.fail.Exception:
        pytest.fail(
            f"{everywhere.left()} (node, package) not served; the first refusal of each node "
            f"still short (node, package, status, body), victim {victim.index}: "
            f"{everywhere.missing}"
        )
    # The gauge is refreshed by the repairer's next pass, after the copies have landed.
    wait_for(
        lambda: (
            "marketplace_node_under_replicated_packages 0.0"
            in http("GET", f"{nodes[0].private_url}/metrics")[1].decode()
        ),
        timeout=60,
        what="the under-replicated gauge back at 0",
        ignoring=NODE_ERRORS,
    )

    for node in nodes[1:]:
        node.kill()
    status, body = publish(nodes[0], author, "alone")
    assert (status, body["code"]) == (503, "insufficient_replicas")
    assert body["retryable"] is True
