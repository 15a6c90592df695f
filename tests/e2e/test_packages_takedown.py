"""Takedowns on a real cluster with real node processes: a BanList entry about content
reaches every node, which then neither serves, publishes nor copies it (451 `blocked`);
a hijack of a name or an overwrite of a version is refused on every node, from a client
and through the peer protocol (a validly signed but conflicting announcement)."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from e2e_helpers import Kubectl, wait_for
from marketplace_node import sealing, signing
from marketplace_node.model import AnnouncementKind, PackageDraft, PackageMeta
from marketplace_operator import k8s
from marketplace_operator.handlers.policy import BANLISTS
from marketplace_protocol.identity import Identity
from peer_helpers import HTTP
from test_policy_propagation import FLEET, apply
from test_policy_propagation import fleet as fleet  # noqa: PLC0414 - the shared fixture

AUTHOR, HIJACKER = Identity.generate(), Identity.generate()


def call(ip: str, method: str, path: str, body: bytes | None = None, **headers: str) -> Any:
    """(status, JSON body or raw bytes) of one request to a node's API."""
    resp = HTTP.request(
        method, f"http://{ip}:7070{path}", body=body, headers=headers, timeout=30.0, retries=False
    )
    try:
        return resp.status, json.loads(resp.data)
    except ValueError:
        return resp.status, resp.data


def publish(ip: str, author: Identity, name: str, version: str, content: bytes) -> Any:
    """Upload and publish as an author does (`marketplace-node publish`): (status, body)."""
    digest = hashlib.sha256(content).hexdigest()
    assert call(ip, "PUT", f"/api/v1/blobs/{digest}", content)[0] in {200, 201}
    draft = PackageDraft(
        name=name, version=version, category="tools", digest=digest, size=len(content)
    )
    meta = sealing.sign_package(author, draft, created=int(time.time()))
    return call(ip, "POST", "/api/v1/packages", meta.model_dump_json(by_alias=True).encode())


def peer_call(ip: str, peer: Identity, method: str, path: str, body: bytes = b"") -> Any:
    """A signed peer-protocol request from `peer`: (status, body)."""
    headers = signing.sign_request(peer, method=method, path=path, body=body,
                                   created=int(time.time()))  # fmt: skip
    headers["Content-Type"] = "application/json"
    return call(ip, method, path, body or None, **headers)


def test_takedowns_and_hijacks_are_refused_on_every_node(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, fleet: dict[str, str]
) -> None:
    """One fleet for both stories (a fleet takes most of a minute to start in CI)."""
    a_takedown_reaches_every_node_and_the_content_cannot_be_fetched_anywhere(
        kube, kubectl, namespace, fleet
    )
    every_hijack_or_overwrite_is_refused_on_every_node(fleet)


def a_takedown_reaches_every_node_and_the_content_cannot_be_fetched_anywhere(
    kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, fleet: dict[str, str]
) -> None:
    first = next(iter(fleet.values()))
    status, evil = publish(first, AUTHOR, "evil-tool", "1.0.0", b"malware")
    assert status == 201, evil
    status, good = publish(first, AUTHOR, "good-tool", "1.0.0", b"fine")
    assert status == 201, good

    def everywhere(path: str, want: int) -> bool:
        return all(call(ip, "GET", path)[0] == want for ip in fleet.values())

    # Every node knows and serves both (fetching also leaves a copy on each node).
    both = [f"/api/v1/packages/{p['id']}/content" for p in (evil, good)]
    wait_for(lambda: all(everywhere(path, 200) for path in both), timeout=30,
             what="served everywhere")  # fmt: skip

    started = time.monotonic()
    apply(kubectl, namespace, {
        "apiVersion": "marketplace.p2p.dev/v1alpha1",
        "kind": "BanList",
        "metadata": {"name": "takedowns"},
        "spec": {"fleet": FLEET, "entries": [{"name": "evil-tool", "reason": "malware"}]},
    })  # fmt: skip
    content = f"/api/v1/packages/{evil['id']}/content"
    wait_for(lambda: everywhere(content, 451), timeout=10, interval=0.05, what="451 everywhere")
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"the takedown took {elapsed:.2f}s to reach every node"

    digest = hashlib.sha256(b"malware").hexdigest()
    peer = Identity.generate()
    for ip in fleet.values():
        status, error = call(ip, "GET", f"/api/v1/packages/{evil['id']}")
        assert (status, error["code"]) == (451, "blocked")
        assert error["details"]["source"] == "banlist/takedowns"  # provenance
        assert call(ip, "GET", "/api/v1/names/evil-tool/resolve")[0] == 404  # no version left
        assert call(ip, "GET", "/api/v1/names/evil-tool/resolve?want=1.0.0")[0] == 451
        assert peer_call(ip, peer, "GET", f"/p2p/v1/content/{digest}")[0] == 451
        body = json.dumps({"packageId": evil["id"]}).encode()
        assert peer_call(ip, peer, "POST", "/p2p/v1/replicate", body)[0] == 451
        assert call(ip, "GET", f"/api/v1/packages/{good['id']}/content")[0] == 200
    status, error = publish(first, AUTHOR, "evil-tool", "1.0.1", b"more malware")
    assert (status, error["code"]) == (451, "blocked")

    def converged() -> dict[str, Any] | None:
        obj = kube.get(BANLISTS, namespace, "takedowns")
        return obj if ((obj or {}).get("status") or {}).get("convergedNodes") == "3/3" else None

    wait_for(converged, timeout=30, what="kubectl get banlist: 3/3")
    shown = kubectl("get", "banlist", "takedowns", "-n", namespace).stdout
    assert "3/3" in shown

    kubectl("delete", "banlist", "takedowns", "-n", namespace)
    wait_for(lambda: everywhere(content, 200), timeout=10, what="served again once lifted")


def every_hijack_or_overwrite_is_refused_on_every_node(fleet: dict[str, str]) -> None:
    ips = list(fleet.values())
    status, owned = publish(ips[0], AUTHOR, "owned-tool", "1.0.0", b"original")
    assert status == 201, owned
    wait_for(lambda: all(call(ip, "GET", f"/api/v1/packages/{owned['id']}")[0] == 200
                         for ip in ips), timeout=30, what="known everywhere")  # fmt: skip
    for ip in ips:
        status, error = publish(ip, HIJACKER, "owned-tool", "1.0.1", b"hijacked")
        assert (status, error["code"]) == (409, "name_taken"), ip
        status, error = publish(ip, AUTHOR, "owned-tool", "1.0.0", b"other bytes")
        assert (status, error["code"]) == (409, "version_exists"), ip

    # Through the peer protocol: a member-signed announcement carrying a validly signed
    # package of the hijacker, fresh, for the owned name; then the owner's own key signing
    # other bytes for the held version.
    rogue = Identity.generate()
    # A claim made in the same second as the owner's is a race, which the names rule settles
    # by hash (either may win); a hijack is a later claim.
    time.sleep(1.1)
    for author, version, code in ((HIJACKER, "1.0.2", "name_taken"),
                                  (AUTHOR, "1.0.0", "version_exists")):  # fmt: skip
        draft = PackageDraft(name="owned-tool", version=version, category="tools",
                             digest=hashlib.sha256(b"x").hexdigest(), size=1)  # fmt: skip
        meta: PackageMeta = sealing.sign_package(author, draft, created=int(time.time()))
        ann = sealing.announce(rogue, AnnouncementKind.NEW_VERSION, created=int(time.time()),
                               package=meta)  # fmt: skip
        body = ann.model_dump_json(by_alias=True).encode()
        for ip in ips:
            status, error = peer_call(ip, rogue, "POST", "/p2p/v1/announce", body)
            assert (status, error.get("code")) == (409, code), (ip, status, error)
    for ip in ips:
        _, names = call(ip, "GET", "/api/v1/names/owned-tool")
        assert names["owners"] == [AUTHOR.peer_id]
        assert names["versions"] == ["1.0.0"]
        _, view = call(ip, "GET", f"/api/v1/packages/{owned['id']}")
        assert view["package"]["digest"] == hashlib.sha256(b"original").hexdigest()
