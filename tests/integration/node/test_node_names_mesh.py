"""Names on five real nodes: a claim race ends with one owner everywhere; every hijack or
overwrite (client API or a validly signed peer announcement) is refused on every node."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from marketplace_node import sealing, signing
from marketplace_node.model import AnnouncementKind, PackageDraft
from marketplace_protocol import identity

from tests.support.node_processes import NODE_ERRORS, NodeCluster, get_json, http
from tests.support.poll import wait_for


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NodeCluster]:
    started = NodeCluster.start(tmp_path, 5)
    try:
        yield started
    finally:
        started.close()


def code_of(url: str, author: identity.Identity, name: str, version: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    http("PUT", f"{url}/api/v1/blobs/{digest}", data)
    draft = PackageDraft(
        name=name, version=version, category="tools", digest=digest, size=len(data)
    )
    meta = sealing.sign_package(author, draft, created=int(time.time()))
    status, answer = http(
        "POST",
        f"{url}/api/v1/packages",
        meta.model_dump_json(by_alias=True).encode(),
        {"Content-Type": "application/json"},
    )
    return "ok" if status in (200, 201) else f"{status} {json.loads(answer)['code']}"


def test_a_claim_race_ends_with_one_owner_and_hijacks_are_refused_everywhere(
    cluster: NodeCluster, tmp_path: Path
) -> None:
    alice, bob, mallory = (identity.Identity.generate() for _ in range(3))
    left, right = cluster.nodes[0], cluster.nodes[4]
    outcomes: dict[str, str] = {}

    def claim(who: str, url: str, author: identity.Identity) -> None:
        outcomes[who] = code_of(url, author, "contested", "1.0.0", who.encode())

    racers = [
        threading.Thread(target=claim, args=("alice", left.url, alice)),
        threading.Thread(target=claim, args=("bob", right.url, bob)),
    ]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    assert "ok" in outcomes.values(), outcomes

    def owners_everywhere() -> list[str] | None:
        seen = {tuple(get_json(f"{n.url}/api/v1/names/contested")["owners"]) for n in cluster.nodes}
        agreed = seen.pop() if len(seen) == 1 else ()
        return list(agreed) or None

    [owner] = wait_for(
        owners_everywhere, timeout=60, what="one owner on every node", ignoring=NODE_ERRORS
    )
    assert owner in (alice.peer_id, bob.peer_id)
    winner = alice if owner == alice.peer_id else bob
    for node in cluster.nodes:  # the loser's package is nowhere to be found
        found = get_json(f"{node.url}/api/v1/search?q=contested")["results"]
        assert [r["author"] for r in found] == [owner]

    # The owner publishes 1.1.0 through the CLI path (client-signed) and yanks nothing yet.
    assert code_of(left.url, winner, "contested", "1.1.0", b"next") == "ok"
    wait_for(
        lambda: all(
            get_json(f"{n.url}/api/v1/names/contested")["latest"] == "1.1.0" for n in cluster.nodes
        ),
        timeout=60,
        ignoring=NODE_ERRORS,
    )
    # Every node refuses a non-owner and other bytes for a held version, through its client API.
    for node in cluster.nodes:
        assert code_of(node.url, mallory, "contested", "9.9.9", b"evil") == "409 name_taken"
        assert code_of(node.url, winner, "contested", "1.1.0", b"other") == "409 version_exists"

    # And through the peer protocol: validly signed (request, origin, author), yet conflicting.
    digest = hashlib.sha256(b"evil").hexdigest()
    draft = PackageDraft(name="contested", version="9.9.9", category="t", digest=digest, size=4)
    # Both dated after everything the owner signed: an entry a peer pushes is judged by the
    # fold alone, and one signed in the same second as the owner's claim (or its 1.1.0) may
    # sort first by its hash. That is a race the fold decides the same way on every node,
    # not a hijack: the test ran inside one second on a quiet machine, and mallory's claim
    # sorted before the owner's on one run in three (session 8).
    hijack = sealing.sign_package(mallory, draft, created=int(time.time()) + 2)
    overwrite = sealing.sign_package(
        winner, draft.model_copy(update={"version": "1.1.0"}), created=int(time.time()) + 2
    )
    for meta, code in ((hijack, "name_taken"), (overwrite, "version_exists")):
        ann = sealing.announce(
            mallory, AnnouncementKind.PACKAGE, created=int(time.time()), package=meta
        )
        body = ann.model_dump_json(by_alias=True).encode()
        for node in cluster.nodes:
            headers = signing.sign_request(
                mallory, method="POST", path="/p2p/v1/announce", body=body, created=int(time.time())
            )
            status, answer = http(
                "POST",
                f"{node.url}/p2p/v1/announce",
                body,
                headers | {"Content-Type": "application/json"},
            )
            assert (status, json.loads(answer).get("code")) == (409, code), answer
    # A backdated claim pushed by a peer: its origin cannot vouch it was fresh.
    backdated = sealing.sign_package(
        mallory, draft.model_copy(update={"name": "settled-name"}), created=0
    )
    ann = sealing.announce(
        mallory, AnnouncementKind.PACKAGE, created=int(time.time()), package=backdated
    )
    body = ann.model_dump_json(by_alias=True).encode()
    headers = signing.sign_request(
        mallory, method="POST", path="/p2p/v1/announce", body=body, created=int(time.time())
    )
    status, answer = http(
        "POST", f"{left.url}/p2p/v1/announce", body, headers | {"Content-Type": "application/json"}
    )
    assert (status, json.loads(answer)["code"]) == (400, "stale_record")
    metrics = http("GET", f"{left.private_url}/metrics")[1].decode()
    assert 'marketplace_node_name_refusals_total{reason="name_taken"}' in metrics

    # Yank through the CLI: resolution skips it, the exact version still resolves.
    key = tmp_path / "winner.pem"
    key.write_bytes(winner.to_pem())
    right.cli("yank", "contested", "1.1.0", author_key=key)
    wait_for(
        lambda: all(
            get_json(f"{n.url}/api/v1/names/contested")["yanked"] == ["1.1.0"]
            for n in cluster.nodes
        ),
        timeout=60,
        ignoring=NODE_ERRORS,
    )
    out = tmp_path / "got.bin"
    fetched = cluster.nodes[2].cli("fetch", "contested@^1", "-o", str(out))
    assert (fetched["version"], fetched["author"]) == ("1.0.0", owner)
    exact = cluster.nodes[2].cli("fetch", "contested@1.1.0", "-o", str(out))
    assert out.read_bytes() == b"next"
    assert exact["signedBy"] == "author"
