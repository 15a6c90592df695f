"""The pushed policy body: serialized once per document, gzipped when large, read by a node."""

from __future__ import annotations

import ast
import asyncio
import gzip
import inspect
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.web_protocol import RequestHandler
from marketplace_operator import nodeclient
from marketplace_operator.nodeclient import GZIP_ABOVE, NodeClient
from marketplace_operator.reconcile import pacing
from marketplace_operator.settings import Settings
from marketplace_protocol.admin import BanEntry, NodeStatus, PolicyApplied, PolicyDocument


def document(bans: int, version: int = 3) -> PolicyDocument:
    entries = [BanEntry(peer_id=f"peer{i:08d}", reason="abuse") for i in range(bans)]
    return PolicyDocument(version=version, hash=f"sha256:{version}-{bans}", bans=entries)


@pytest.fixture
async def node() -> AsyncIterator[tuple[TestServer, list[dict[str, Any]]]]:
    """A stand-in admin endpoint that records what it was sent."""
    seen: list[dict[str, Any]] = []

    async def put_policy(request: web.Request) -> web.Response:
        raw = await request.read()  # aiohttp inflates Content-Encoding: gzip
        seen.append(
            {
                "encoding": request.headers.get("Content-Encoding"),
                "body": raw,
                "peer": request.transport.get_extra_info("peername") if request.transport else None,
            }
        )
        doc = PolicyDocument.model_validate_json(raw)
        applied = PolicyApplied(version=doc.version, hash=doc.hash)
        return web.json_response(applied.model_dump(mode="json", by_alias=True))

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_put("/admin/v1/policy", put_policy)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, seen
    await server.close()


@pytest.mark.parametrize(("bans", "gzipped"), [(1, False), (5_000, True)])
async def test_policy_is_sent_whole_and_gzipped_only_when_large(
    node: tuple[TestServer, list[dict[str, Any]]], bans: int, gzipped: bool
) -> None:
    server, seen = node
    doc = document(bans)
    assert (len(doc.model_dump_json(by_alias=True)) > GZIP_ABOVE) is gzipped
    client = NodeClient.create()
    try:
        applied = await client.put_policy(str(server.make_url("")).rstrip("/"), "t", doc)
    finally:
        await client.close()
    assert (applied.version, applied.hash) == (doc.version, doc.hash)
    assert (seen[0]["encoding"] == "gzip") is gzipped
    assert PolicyDocument.model_validate_json(seen[0]["body"]) == doc


async def test_one_encoding_per_document_whatever_the_fleet_size(
    node: tuple[TestServer, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, seen = node
    calls: list[int] = []
    real = nodeclient.encode

    def counting(body: Any) -> nodeclient.Encoded:
        calls.append(body.version)
        return real(body)

    monkeypatch.setattr(nodeclient, "encode", counting)
    client = NodeClient.create()
    base = str(server.make_url("")).rstrip("/")
    try:
        for doc in (document(100, 4), document(101, 5)):
            for _ in range(10):  # ten nodes of one fleet
                await client.put_policy(base, "t", doc)
    finally:
        await client.close()
    assert calls == [4, 5]
    assert [json.loads(s["body"])["version"] for s in seen] == [4] * 10 + [5] * 10


async def test_a_client_sharing_another_uses_its_connections(
    node: tuple[TestServer, list[dict[str, Any]]],
) -> None:
    """Issue 15: the node loops and the policy worker had a session each, so each node kept
    two connections from the operator (about 2,000 to open and keep at 1,000 nodes)."""
    server, seen = node
    base = str(server.make_url("")).rstrip("/")
    owner = NodeClient.create(concurrency=2, connections=6)
    try:
        shared = owner.sharing(concurrency=4)
        await owner.put_policy(base, "t", document(1, version=3))
        await shared.put_policy(base, "t", document(1, version=4))
        await shared.close()  # not its session to close
        await owner.put_policy(base, "t", document(1, version=5))
    finally:
        await owner.close()
    assert [PolicyDocument.model_validate_json(s["body"]).version for s in seen] == [3, 4, 5]
    assert len({s["peer"] for s in seen}) == 1  # one kept-alive connection served all


def test_large_bodies_shrink() -> None:
    encoded = nodeclient.encode(document(10_000))
    assert encoded.headers["Content-Encoding"] == "gzip"
    raw = gzip.decompress(encoded.data)
    assert len(encoded.data) < len(raw) / 3


def test_operations_names_every_admin_call() -> None:
    """The error counter's series are created for OPERATIONS: it must name every call."""
    tree = ast.parse(inspect.getsource(nodeclient))
    used = {
        kw.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "operation" and isinstance(kw.value, ast.Constant)
    }
    assert used == set(nodeclient.OPERATIONS)


async def test_the_node_loops_status_polls_wait_for_a_policy_push_at_most_a_while() -> None:
    """Issue 15: at 1,000 nodes the polls took as much of the operator's loop (and the
    nodes') as a new policy's pushes, which reached the last node seconds late."""
    arrived: list[str] = []
    release, pushed = asyncio.Event(), asyncio.Event()

    async def put_policy(request: web.Request) -> web.Response:
        arrived.append("policy")
        pushed.set()
        await release.wait()
        doc = PolicyDocument.model_validate_json(await request.read())
        return web.json_response(
            PolicyApplied(version=doc.version, hash=doc.hash).model_dump(by_alias=True)
        )

    async def status(_: web.Request) -> web.Response:
        arrived.append("status")
        return web.json_response(NodeStatus(peer_id="mpnode").model_dump(by_alias=True))

    app = web.Application()
    app.router.add_put("/admin/v1/policy", put_policy)
    app.router.add_get("/admin/v1/status", status)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    polls = NodeClient.create(yields_to_pushes=5.0)
    pushes = polls.sharing(concurrency=4)
    try:
        push = asyncio.create_task(pushes.put_policy(base, "t", document(1)))
        await pushed.wait()
        poll = asyncio.create_task(polls.status(base, "t", peers=0))
        await asyncio.sleep(0.3)
        assert arrived == ["policy"]  # the poll waits while the push is in flight
        release.set()
        await push
        await poll
        assert arrived == ["policy", "status"]
        # A push that never ends holds a poll back only `yields_to_pushes` seconds.
        release.clear()
        pushed.clear()
        impatient = NodeClient.create(yields_to_pushes=0.2)
        its_pushes = impatient.sharing(concurrency=4)
        stuck = asyncio.create_task(its_pushes.put_policy(base, "t", document(1, version=4)))
        await pushed.wait()
        await asyncio.wait_for(impatient.status(base, "t", peers=0), 2.0)
        assert arrived[-1] == "status"
        release.set()
        await stuck
        await impatient.close()
    finally:
        await polls.close()
        await server.close()


async def test_connections_outlive_a_big_fleets_poll_interval_not_the_nodes_keepalive() -> None:
    """Idle connections closed before the next routine poll made every poll of a 1,000-node
    fleet a new TCP connection; kept longer than the node's server keeps them, a poll would
    race the server's close."""
    settings = Settings()
    interval = pacing.paced_interval(
        settings.poll_interval_seconds, 1_000, settings.polls_per_second
    )
    server = inspect.signature(RequestHandler.__init__).parameters["keepalive_timeout"].default
    assert interval < nodeclient.KEEPALIVE_SECONDS < server
    client = NodeClient.create()
    try:
        connector = client._session.connector
        assert connector is not None
        assert connector._keepalive_timeout == nodeclient.KEEPALIVE_SECONDS
    finally:
        await client.close()
