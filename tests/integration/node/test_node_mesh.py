"""Five real node processes on loopback: gossip, search, fetch, failover, restart, subscribe."""

from __future__ import annotations

import functools
import hashlib
import json
import socket
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from marketplace_node import sealing, signing
from marketplace_node.model import AnnouncementKind, PackageDraft
from marketplace_protocol import identity

from tests.support.node_processes import (
    NODE_ERRORS,
    SINGLE_COPY,
    Node,
    NodeCluster,
    get_json,
    http,
)
from tests.support.poll import wait_for


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NodeCluster]:
    """Five nodes, all bootstrapped from the first, meshed; every process killed afterwards.
    One copy per package: these tests follow where copies are (fallback between providers,
    a sole provider's hand-off); copies and repair are test_node_replication's."""
    started = NodeCluster.start(tmp_path, 5, SINGLE_COPY)
    try:
        yield started
    finally:
        started.close()
        started.show_logs()


def publish(node: Node, tmp: Path, name: str, content: bytes, **extra: str) -> str:
    path = tmp / f"{name}.bin"
    path.write_bytes(content)
    args = [
        "publish",
        str(path),
        "--name",
        name,
        "--version",
        extra.get("version", "1.0"),
        "--category",
        "tools",
        "--description",
        extra.get("description", f"{name} package"),
        "--tag",
        "demo",
    ]
    return str(node.cli(*args)["id"])


def search_ids(node: Node, *keywords: str) -> list[str]:
    query = urllib.parse.urlencode([("q", k) for k in keywords])
    return [r["id"] for r in get_json(f"{node.url}/api/v1/search?{query}")["results"]]


def finds(node: Node, keyword: str, package_id: str) -> bool:
    return package_id in search_ids(node, keyword)


def providers(node: Node, package_id: str) -> dict[str, float]:
    view = get_json(f"{node.url}/api/v1/packages/{package_id}")
    return {p["peerId"]: p["reputation"] for p in view["providers"]}


def test_published_package_is_found_and_fetched_everywhere(
    cluster: NodeCluster, tmp_path: Path
) -> None:
    content = b"the quick brown fox" * 100
    package_id = publish(cluster.nodes[3], tmp_path, "foxtool", content)
    for node in cluster.nodes:
        wait_for(
            functools.partial(finds, node, "FOX", package_id),
            timeout=30,
            what=f"node {node.index} to find the package",
            ignoring=NODE_ERRORS,
        )
    for node in cluster.nodes:
        if node is cluster.nodes[3]:
            continue
        out = tmp_path / f"out{node.index}"
        result = node.cli("fetch", package_id, "--output", str(out))
        assert out.read_bytes() == content
        assert result["digest"] == hashlib.sha256(content).hexdigest()


def test_dead_and_tampering_providers_are_skipped_and_lose_reputation(
    cluster: NodeCluster, tmp_path: Path
) -> None:
    by_id = sorted(cluster.nodes, key=lambda n: n.peer_id)
    dead, tampering, good, fetcher = by_id[0], by_id[1], by_id[2], by_id[3]
    content = b"precious bytes" * 1000
    package_id = publish(good, tmp_path, "precious", content)
    for node in (dead, tampering):
        wait_for(
            functools.partial(finds, node, "precious", package_id),
            timeout=30,
            what="catalogue to spread",
            ignoring=NODE_ERRORS,
        )
        node.cli("fetch", package_id, "--output", str(tmp_path / f"copy{node.index}"))
    wait_for(
        lambda: len(providers(fetcher, package_id)) == 3,
        timeout=30,
        what="fetcher to see three providers",
        ignoring=NODE_ERRORS,
    )
    blob = tampering.data_dir / "blobs" / hashlib.sha256(content).hexdigest()
    blob.write_bytes(b"X" + content[1:])
    dead.kill()

    out = tmp_path / "fetched"
    fetcher.cli("fetch", package_id, "--output", str(out))
    assert out.read_bytes() == content
    reputation = providers(fetcher, package_id)
    assert reputation[dead.peer_id] < 0.5
    assert reputation[tampering.peer_id] < 0.5
    assert reputation[good.peer_id] > 0.5
    metrics = http("GET", f"{fetcher.private_url}/metrics")[1].decode()
    assert 'marketplace_node_fetches_total{outcome="integrity"} 1.0' in metrics
    assert 'marketplace_node_fetches_total{outcome="failed"} 1.0' in metrics


def test_restarted_node_keeps_what_it_acknowledged_and_catches_up(
    cluster: NodeCluster, tmp_path: Path
) -> None:
    victim, other = cluster.nodes[2], cluster.nodes[4]
    acknowledged = publish(victim, tmp_path, "durable", b"must survive")
    victim.kill()  # kill -9 right after the acknowledgement
    missed = [publish(other, tmp_path, f"missed{i}", f"while down {i}".encode()) for i in range(3)]
    victim.start()
    victim.wait_listening()
    started = time.monotonic()
    assert acknowledged in search_ids(victim, "durable")
    for package_id in missed:
        wait_for(
            functools.partial(finds, victim, "missed", package_id),
            timeout=30,
            what="restarted node to catch up",
            ignoring=NODE_ERRORS,
        )
    assert time.monotonic() - started < 15  # caught up within seconds of listening
    content = get_json(f"{victim.url}/api/v1/packages/{acknowledged}")
    assert content["local"] is True


def _sse_events(
    node: Node, query: str, last_event_id: str | None, want: int, timeout: float = 10.0
) -> list[tuple[str, dict[str, object]]]:
    """Read `want` package events from the node's SSE stream over a raw socket, with a deadline."""
    sock = socket.create_connection((node.host, node.port), timeout=timeout)
    headers = f"GET /api/v1/subscribe?{query} HTTP/1.1\r\nHost: {node.host}\r\n"
    headers += "Accept: text/event-stream\r\n"
    if last_event_id is not None:
        headers += f"Last-Event-ID: {last_event_id}\r\n"
    sock.sendall((headers + "\r\n").encode())
    buffer = b""
    events: list[tuple[str, dict[str, object]]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(events) < want and time.monotonic() < deadline:
            buffer += sock.recv(65536)
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                fields = dict(
                    line.split(": ", 1)
                    for line in block.decode().splitlines()
                    if ": " in line and not line.startswith(":")
                )
                if fields.get("event") == "package":
                    events.append((fields["id"], json.loads(fields["data"])))
    finally:
        sock.close()
    return events


def test_subscriber_sees_remote_publish_and_resumes_without_loss(
    cluster: NodeCluster, tmp_path: Path
) -> None:
    watcher, publisher = cluster.nodes[1], cluster.nodes[4]
    first = publish(publisher, tmp_path, "streamy1", b"1")
    events = _sse_events(watcher, "q=streamy", None, want=1)
    assert [e[1]["id"] for e in events] == [first]
    cursor = events[-1][0]
    later = [publish(publisher, tmp_path, f"streamy{i}", str(i).encode()) for i in (2, 3)]
    publish(publisher, tmp_path, "unrelated", b"u")
    for package_id in later:
        wait_for(
            functools.partial(finds, watcher, "streamy", package_id),
            timeout=30,
            what="gossip to the watcher",
            ignoring=NODE_ERRORS,
        )
    resumed = _sse_events(watcher, "q=streamy", cursor, want=2)
    assert [e[1]["id"] for e in resumed] == later


def test_forged_announcement_and_forged_request_are_refused(cluster: NodeCluster) -> None:
    target = cluster.nodes[0]
    mallory = identity.Identity.generate()
    victim = identity.Identity.generate()
    draft = PackageDraft(name="trusted", version="1.0", category="tools", digest="0" * 64, size=1)
    genuine = sealing.sign_package(victim, draft, created=int(time.time()))
    tampered = genuine.model_copy(update={"description": "now with malware"})
    ann = sealing.announce(
        mallory, AnnouncementKind.PACKAGE, created=int(time.time()), package=tampered
    )
    body = ann.model_dump_json(by_alias=True).encode()
    headers = signing.sign_request(
        mallory, method="POST", path="/p2p/v1/announce", body=body, created=int(time.time())
    )
    status, answer = http(
        "POST",
        f"{target.url}/p2p/v1/announce",
        body,
        headers | {"Content-Type": "application/json"},
    )
    assert (status, json.loads(answer)["code"]) == (401, "bad_signature")

    honest = sealing.announce(
        mallory, AnnouncementKind.PACKAGE, created=int(time.time()), package=genuine
    )
    honest_body = honest.model_dump_json(by_alias=True).encode()
    forged_headers = signing.sign_request(
        mallory, method="POST", path="/p2p/v1/announce", body=b"{}", created=int(time.time())
    )
    status, answer = http("POST", f"{target.url}/p2p/v1/announce", honest_body, forged_headers)
    assert (status, json.loads(answer)["code"]) == (401, "bad_signature")
    stale_headers = signing.sign_request(
        mallory,
        method="POST",
        path="/p2p/v1/announce",
        body=honest_body,
        created=int(time.time()) - 3600,
    )
    status, answer = http("POST", f"{target.url}/p2p/v1/announce", honest_body, stale_headers)
    assert (status, json.loads(answer)["code"]) == (401, "stale_request")
    assert search_ids(target, "trusted") == []


def test_sigterm_drains_and_exits_cleanly(cluster: NodeCluster) -> None:
    leaving, observer = cluster.nodes[4], cluster.nodes[0]
    assert leaving.terminate() == 0
    wait_for(
        lambda: (
            leaving.peer_id not in {p["peerId"] for p in get_json(f"{observer.url}/api/v1/peers")}
        ),
        timeout=30,
        what="observer to drop the leaving peer",
        ignoring=NODE_ERRORS,
    )


def test_drained_sole_provider_hands_its_content_to_a_peer(
    cluster: NodeCluster, tmp_path: Path
) -> None:
    leaving, reader = cluster.nodes[2], cluster.nodes[0]
    content = b"only one copy" * 100
    package_id = publish(leaving, tmp_path, "solecopy", content)
    wait_for(
        functools.partial(finds, reader, "solecopy", package_id),
        timeout=30,
        what="catalogue to spread",
        ignoring=NODE_ERRORS,
    )
    assert leaving.terminate() == 0  # drain: replicate to a peer, then announce leaving

    def others_provide() -> bool:
        return bool(providers(reader, package_id).keys() - {leaving.peer_id})

    wait_for(
        others_provide, timeout=30, what="a peer to take over as provider", ignoring=NODE_ERRORS
    )
    assert leaving.peer_id not in providers(reader, package_id)
    out = tmp_path / "after-drain"
    reader.cli("fetch", package_id, "--output", str(out))
    assert out.read_bytes() == content


def test_members_file_in_the_policy_dir_joins_the_fleet(
    cluster: NodeCluster, tmp_path: Path
) -> None:
    known = publish(cluster.nodes[1], tmp_path, "beforejoin", b"x")
    policy = tmp_path / "policy"
    policy.mkdir()
    members = {"members": [{"address": cluster.nodes[0].url}, {"address": cluster.nodes[3].url}]}
    (policy / "members.json").write_text(json.dumps(members))
    newcomer = cluster.add(bootstrap=[], env={"MARKETPLACE_NODE_POLICY_DIR": str(policy)})
    wait_for(
        lambda: len(get_json(f"{newcomer.url}/api/v1/peers")) >= 5,
        timeout=30,
        what="the newcomer to join",
        ignoring=NODE_ERRORS,
    )
    wait_for(
        functools.partial(finds, newcomer, "beforejoin", known),
        timeout=30,
        what="the newcomer to sync",
        ignoring=NODE_ERRORS,
    )
    assert http("GET", f"{newcomer.private_url}/readyz")[0] == 200
