"""The HTTP layer in process: probes, the signed peer door, forgeries, replays, error bodies."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from marketplace_node import limits, sealing, signing
from marketplace_node.config import NodeSettings
from marketplace_node.model import Hello
from marketplace_node.service import NodeService
from marketplace_node.store import Store
from marketplace_protocol import identity
from marketplace_protocol.admin import ErrorBody
from marketplace_protocol.clock import SystemClock
from pydantic import SecretStr

from tests.support.net import free_port
from tests.support.node_server import Served, serving
from tests.support.signed import package, package_announcement


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Served]:
    settings = NodeSettings(data_dir=tmp_path, port=0, admin_token=SecretStr("s3cret"))
    async with serving(settings) as running:
        yield running


def signed(
    ident: identity.Identity, method: str, path: str, body: bytes = b"", query: str = ""
) -> dict[str, str]:
    headers = signing.sign_request(
        ident, method=method, path=path, query=query, body=body, created=int(SystemClock().wall())
    )
    return headers | {"Content-Type": "application/json"}


async def test_probes_and_documents(node: Served) -> None:
    public, _, private = node
    async with aiohttp.ClientSession() as http:
        assert (await http.get(private.make_url("/healthz"))).status == 200
        assert (await http.get(private.make_url("/readyz"))).status == 200  # no peers configured
        spec = await (await http.get(public.make_url("/openapi.json"))).json()
        assert "/p2p/v1/announce" in spec["paths"]
        assert "Announcement" in spec["components"]["schemas"]
        assert not any(path.startswith("/admin/") for path in spec["paths"])
        spec = await (await http.get(private.make_url("/openapi.json"))).json()
        assert {"/healthz", "/readyz", "/admin/v1/status"} <= set(spec["paths"])
        assert not any(path.startswith(("/api/", "/p2p/")) for path in spec["paths"])
        metrics = await (await http.get(private.make_url("/metrics"))).text()
        assert "marketplace_node_catalogue_packages" in metrics


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/admin/v1/status"])
async def test_the_public_listener_serves_no_private_route(node: Served, path: str) -> None:
    public, _, _ = node
    async with aiohttp.ClientSession() as http:
        resp = await http.get(public.make_url(path), headers={"Authorization": "Bearer s3cret"})
        assert resp.status == 404


@pytest.mark.parametrize("path", ["/api/v1/status", "/api/v1/search?q=x", "/p2p/v1/changes"])
async def test_the_private_listener_serves_no_public_route(node: Served, path: str) -> None:
    _, _, private = node
    async with aiohttp.ClientSession() as http:
        assert (await http.get(private.make_url(path))).status == 404


async def test_unsigned_peer_request_is_refused(node: Served) -> None:
    server, service, _ = node
    body = package_announcement(package()).model_dump_json(by_alias=True).encode()
    async with aiohttp.ClientSession() as http:
        resp = await http.post(server.make_url("/p2p/v1/announce"), data=body)
        assert resp.status == 401
        assert (await resp.json())["code"] == "bad_signature"
    assert len(service.catalogue) == 0


async def test_signed_announcement_is_stored_and_a_replay_refused(
    node: Served,
) -> None:
    server, service, _ = node
    peer = identity.Identity.generate()
    now = int(SystemClock().wall())  # a push must be fresh (docs/packages.md)
    meta = package("goodpkg", created=now)
    body = package_announcement(meta, created=now).model_dump_json(by_alias=True).encode()
    headers = signed(peer, "POST", "/p2p/v1/announce", body)
    async with aiohttp.ClientSession() as http:
        resp = await http.post(server.make_url("/p2p/v1/announce"), data=body, headers=headers)
        assert (resp.status, (await resp.json())["accepted"]) == (202, True)
        again = await http.post(server.make_url("/p2p/v1/announce"), data=body, headers=headers)
        assert (again.status, (await again.json())["code"]) == (401, "replayed_request")
    assert service.catalogue.get(meta.id) == meta


async def test_forged_announcement_in_a_validly_signed_request_is_refused(
    node: Served,
) -> None:
    server, service, _ = node
    peer = identity.Identity.generate()
    genuine = package_announcement(package("victim"))
    assert genuine.package is not None
    forged = genuine.model_copy(
        update={"package": genuine.package.model_copy(update={"description": "evil"})}
    )
    body = forged.model_dump_json(by_alias=True).encode()
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            server.make_url("/p2p/v1/announce"),
            data=body,
            headers=signed(peer, "POST", "/p2p/v1/announce", body),
        )
        assert (resp.status, (await resp.json())["code"]) == (401, "bad_signature")
    assert len(service.catalogue) == 0
    assert forged.id not in service.seen
    assert (
        service.metrics.registry.get_sample_value(
            "marketplace_node_announcements_total", {"outcome": "invalid"}
        )
        == 1.0
    )


async def test_malformed_peer_body_is_a_400_with_a_code(
    node: Served,
) -> None:
    server, _, _ = node
    peer = identity.Identity.generate()
    body = b'{"kind": "package"}'
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            server.make_url("/p2p/v1/announce"),
            data=body,
            headers=signed(peer, "POST", "/p2p/v1/announce", body),
        )
        assert (resp.status, (await resp.json())["code"]) == (400, "invalid_input")


async def test_publish_then_search_and_page_through_the_api(
    node: Served,
) -> None:
    server, service, _ = node
    author = identity.Identity.generate()
    content = b"some bytes"
    now = int(SystemClock().wall())

    def signed_package(name: str, version: str, created: int | None = now) -> bytes:
        return (
            package(name, version, content=content, publisher=author, created=created)
            .model_dump_json(by_alias=True)
            .encode()
        )

    async with aiohttp.ClientSession() as http:

        async def post(body: bytes) -> tuple[int, dict[str, str]]:
            resp = await http.post(server.make_url("/api/v1/packages"), data=body)
            return resp.status, await resp.json()

        draft = b'{"name":"a","version":"1","category":"c","digest":"%s","size":10}'
        assert (await post(draft % hashlib.sha256(content).hexdigest().encode()))[0] == 400
        assert (await post(signed_package("alpha", "1")))[1]["code"] == "invalid_input"  # no blob
        digest = hashlib.sha256(content).hexdigest()
        assert (
            await http.put(server.make_url(f"/api/v1/blobs/{digest}"), data=content)
        ).status == 201
        node_signed = await post(signed_package("alpha", "1", created=None))
        assert (node_signed[0], node_signed[1]["code"]) == (400, "author_signature_required")
        stale = await post(signed_package("alpha", "1", created=now - 3_600))
        assert stale[1]["code"] == "stale_record"
        for name, version in (("alpha", "1"), ("alpha", "2"), ("alps", "1")):
            status, view = await post(signed_package(name, version))
            assert (status, view["author"], view["signedBy"]) == (201, author.peer_id, "author")
        retry = await post(signed_package("alpha", "2"))
        assert retry[0] == 200  # an identical retry
        # the same content signed again later (another `created`, so another id), as a
        # second `kubectl marketplace publish` of one file does: the package stored first
        again = await post(signed_package("alpha", "2", created=now + 1))
        assert (again[0], again[1]["id"]) == (200, retry[1]["id"])
        page = await (
            await http.get(server.make_url("/api/v1/search"), params={"q": "AL", "limit": "1"})
        ).json()
        assert len(page["results"]) == 1
        assert page["nextCursor"]
        rest = await (
            await http.get(
                server.make_url("/api/v1/search"),
                params={"q": "al", "limit": "1", "cursor": page["nextCursor"]},
            )
        ).json()
        assert len(rest["results"]) == 1
        assert rest["nextCursor"] is None  # each name once: alpha@2 (not alpha@1), alps@1
        results = {r["package"]["name"]: r for r in (*page["results"], *rest["results"])}
        assert results["alpha"]["package"]["version"] == "2"
        assert results["alpha"]["versions"] == ["1", "2"]
        assert results["alpha"]["author"] == author.peer_id
        bad = await http.get(server.make_url("/api/v1/search"), params={"limit": "0"})
        assert (bad.status, (await bad.json())["code"]) == (400, "invalid_input")
        got = await http.get(
            server.make_url(f"/api/v1/packages/{page['results'][0]['id']}/content")
        )
        assert await got.read() == content
        resolved = await http.get(
            server.make_url("/api/v1/names/alpha/resolve"), params={"want": "^1"}
        )
        assert (await resolved.json())["package"]["version"] == "1"
    kinds = [body for _, body in await service.store.changes_after(0, 10)]
    assert any('"new_version"' in k for k in kinds)
    sealing.verify_package(service.catalogue.get(page["results"][0]["id"]))  # type: ignore[arg-type]


async def test_admin_api_is_mounted_behind_the_token(node: Served) -> None:
    _, service, server = node
    async with aiohttp.ClientSession() as http:
        assert (await http.get(server.make_url("/admin/v1/status"))).status == 401
        resp = await http.get(
            server.make_url("/admin/v1/status"), headers={"Authorization": "Bearer s3cret"}
        )
        answer = await resp.json()
        assert (resp.status, answer["peerId"]) == (200, service.identity.peer_id)
        assert answer["localBans"] == 0  # the operator's local-ban sweep skips it
        members = {"members": [{"address": "http://127.0.0.9:1"}]}
        resp = await http.put(
            server.make_url("/admin/v1/members"),
            json=members,
            headers={"Authorization": "Bearer s3cret"},
        )
        assert resp.status == 204
    assert service.configured_peers == ("http://127.0.0.9:1",)
    assert not service.ready()  # peers configured, none joined


async def test_the_fleets_replication_arrives_with_the_policy_and_overrides_the_settings(
    node: Served,
) -> None:
    _, service, server = node  # the admin API: the private listener
    service.members = tuple(f"http://127.0.0.{i}:1" for i in range(2, 7))  # a fleet of six
    assert (service.replication().factor, service.replication().min_in_sync) == (3, 2)
    admin = {"Authorization": "Bearer s3cret"}
    async with aiohttp.ClientSession() as http:
        bad = {"version": 1, "replication": {"factor": 2, "minInSync": 3}}
        resp = await http.put(server.make_url("/admin/v1/policy"), json=bad, headers=admin)
        assert resp.status == 400
        assert (service.replication().factor, service.replication().min_in_sync) == (3, 2)
        good = {"version": 1, "replication": {"factor": 5, "minInSync": 1}}
        resp = await http.put(server.make_url("/admin/v1/policy"), json=good, headers=admin)
        assert resp.status == 200
        assert (service.replication().factor, service.replication().min_in_sync) == (5, 1)
        resp = await http.put(
            server.make_url("/admin/v1/policy"), json={"version": 2}, headers=admin
        )
        assert resp.status == 200  # without it: the node's own settings again
    assert (service.replication().factor, service.replication().min_in_sync) == (3, 2)


async def test_oversized_peer_body_is_refused(
    node: Served,
) -> None:
    server, _, _ = node
    body = b"x" * (limits.ANNOUNCE_BODY_MAX + 1)
    peer = identity.Identity.generate()
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            server.make_url("/p2p/v1/announce"),
            data=body,
            headers=signed(peer, "POST", "/p2p/v1/announce", body),
        )
        assert (resp.status, (await resp.json())["code"]) == (413, "payload_too_large")


async def test_hello_from_another_fleet_is_refused(node: Served) -> None:
    server, service, _ = node
    peer = identity.Identity.generate()
    async with aiohttp.ClientSession() as http:
        for fleet, expected in (("other", 403), ("default", 200)):
            body = Hello(address="http://127.0.0.9:1", fleet=fleet).model_dump_json().encode()
            resp = await http.post(
                server.make_url("/p2p/v1/hello"),
                data=body,
                headers=signed(peer, "POST", "/p2p/v1/hello", body),
            )
            assert resp.status == expected
    assert [p.peer_id for p in service.peers.all()] == [peer.peer_id]


async def test_gossip_bytes_count_announcements_received_and_pushed(tmp_path: Path) -> None:
    relay_settings = NodeSettings(data_dir=tmp_path / "relay", port=0)
    next_settings = NodeSettings(data_dir=tmp_path / "next", port=0)
    for settings in (relay_settings, next_settings):  # nodes that ran before: a fresh store
        store = Store(settings.data_dir / "catalogue.sqlite3")  # is a lost disk, whose
        await store.open()  # `peer_leaving` the node pushes once it knows a peer
        await store.close()
    async with (
        serving(relay_settings) as (relay, relayed, _),
        serving(next_settings) as (nxt, last, _),
    ):
        relayed.peers.seen(last.identity.peer_id, str(nxt.make_url("")).rstrip("/"), 0.0)
        now = int(SystemClock().wall())  # a push must be fresh (docs/packages.md)
        ann = package_announcement(package("spread", created=now), created=now)
        body = ann.model_dump_json(by_alias=True).encode()
        forwarded = ann.model_copy(update={"hops": ann.hops + 1}).model_dump_json(by_alias=True)
        origin = identity.Identity.generate()
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                relay.make_url("/p2p/v1/announce"),
                data=body,
                headers=signed(origin, "POST", "/p2p/v1/announce", body),
            )
            assert resp.status == 202
        await relayed.settle_pushes()

    def gossip_bytes(service: NodeService, direction: str) -> float | None:
        return service.metrics.registry.get_sample_value(
            "marketplace_node_gossip_bytes_total", {"direction": direction}
        )

    assert gossip_bytes(relayed, "in") == len(body)
    assert gossip_bytes(relayed, "out") == len(forwarded.encode())  # one hop further
    assert gossip_bytes(last, "in") == len(forwarded.encode())
    assert len(last.catalogue) == 1


async def test_provider_serving_bytes_that_contradict_the_signed_digest_is_named(
    tmp_path: Path,
) -> None:
    provider_settings = NodeSettings(  # one copy: the fetcher must fetch from the provider
        data_dir=tmp_path / "provider", port=free_port(), replication_factor=1, min_in_sync=1
    )
    fetcher_settings = NodeSettings(data_dir=tmp_path / "fetcher", port=0)
    async with (
        serving(provider_settings) as (provider_server, provider, _),
        serving(fetcher_settings) as (fetcher_server, fetcher, _),
    ):
        provider.peers.seen(
            fetcher.identity.peer_id, str(fetcher_server.make_url("")).rstrip("/"), 0.0
        )
        content = b"genuine bytes " * 100
        digest = hashlib.sha256(content).hexdigest()
        meta = package("tampered", content=content, created=int(SystemClock().wall()))
        async with aiohttp.ClientSession() as http:
            put = await http.put(provider_server.make_url(f"/api/v1/blobs/{digest}"), data=content)
            assert put.status == 201
            published = await http.post(
                provider_server.make_url("/api/v1/packages"),
                data=meta.model_dump_json(by_alias=True),
            )
            assert published.status == 201, await published.text()
            package_id = meta.id
            await provider.settle_pushes()
            assert fetcher.catalogue.get(package_id) is not None  # announced, provider recorded
            provider.blobs.path(digest).write_bytes(b"X" * len(content))  # same size, other bytes
            resp = await http.get(fetcher_server.make_url(f"/api/v1/packages/{package_id}/content"))
            error = ErrorBody.model_validate_json(await resp.read())
    assert resp.status == 502
    assert (error.code, error.retryable) == ("integrity_failed", False)
    assert error.details == {"package": package_id, "providers": provider.identity.peer_id}
    assert not fetcher.blobs.has(digest)


async def test_publishes_are_limited_per_author_key_and_only_verified_ones_count(
    node: Served,
) -> None:
    server, _, private = node
    author, now = identity.Identity.generate(), int(SystemClock().wall())
    limits_doc = {"version": 1, "rateLimits": {"perPublisher": {"rate": 0.001, "burst": 1}}}
    async with aiohttp.ClientSession() as http:
        resp = await http.put(
            private.make_url("/admin/v1/policy"),
            json=limits_doc,
            headers={"Authorization": "Bearer s3cret"},
        )
        assert resp.status == 200
        digest = hashlib.sha256(b"content").hexdigest()
        await http.put(server.make_url(f"/api/v1/blobs/{digest}"), data=b"content")

        async def post(body: str) -> tuple[int, dict[str, object]]:
            resp = await http.post(server.make_url("/api/v1/packages"), data=body)
            return resp.status, await resp.json()

        first = package("limited", "1.0.0", publisher=author, created=now)
        forged = first.model_copy(update={"signature": "A" * 86 + "=="})
        assert (await post(forged.model_dump_json(by_alias=True)))[0] in {400, 401}
        assert (await post(first.model_dump_json(by_alias=True)))[0] == 201  # budget intact
        second = package("limited", "1.0.1", publisher=author, created=now)
        status, error = await post(second.model_dump_json(by_alias=True))
        assert (status, error["code"]) == (429, "rate_limited")
        assert error["details"] == {"scope": "publisher", "author": author.peer_id}
        other = package("other-name", "1.0.0", publisher=identity.Identity.generate(), created=now)
        assert (await post(other.model_dump_json(by_alias=True)))[0] == 201
