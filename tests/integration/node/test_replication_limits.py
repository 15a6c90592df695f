"""Copies between nodes are not throttled by the per-peer client limits: on three real
nodes whose `fetch` limit is tight (1/s, burst 2) and which serve a steady client load,
every publish of a burst is acknowledged (201). Before, a copy's `replicate` and the
replica's fetch of the bytes were charged to the `fetch` limit: 429s, then 503s."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from marketplace_protocol import identity
from marketplace_protocol.admin import Limit, Operation, PolicyDocument, RateLimits

from tests.integration.node.test_node_replication import holders, publish
from tests.support.node_processes import NodeCluster, http

BURST = 5  # a blob and a publish each: within the client's own publish burst (10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NodeCluster]:
    limits = RateLimits()
    limits.per_peer[Operation.FETCH] = Limit(rate=1, burst=2)
    policy = tmp_path / "policy"
    policy.mkdir()
    document = PolicyDocument(version=1, rate_limits=limits)
    (policy / "policy.json").write_text(document.model_dump_json(by_alias=True))
    started = NodeCluster.start(tmp_path, 3, {"MARKETPLACE_NODE_POLICY_DIR": str(policy)})
    try:
        yield started
    finally:
        started.close()


def test_a_burst_of_publishes_is_acknowledged_under_tight_fetch_limits(
    cluster: NodeCluster,
) -> None:
    nodes = cluster.nodes
    author = identity.Identity.generate()
    stop = threading.Event()

    def search_load() -> None:  # clients searching the fleet all along
        while not stop.is_set():
            for node in nodes:
                http("GET", f"{node.url}/api/v1/search?q=burst")
            time.sleep(0.05)

    load = threading.Thread(target=search_load, daemon=True)
    load.start()
    try:
        answers = [publish(nodes[0], author, f"burst{i}") for i in range(BURST)]
    finally:
        stop.set()
        load.join(timeout=10)
    refused = [(status, view.get("code")) for status, view in answers if status != 201]
    if refused:
        cluster.show_logs()
    assert not refused, refused
    for _, view in answers:
        assert holders(nodes, str(view["id"])) >= 2  # minInSync (default 2) at the 201
