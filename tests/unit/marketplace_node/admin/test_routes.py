"""The admin API over real HTTP (aiohttp test server on loopback) with the real policy enforcer."""

from __future__ import annotations

import gzip
import hmac
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from marketplace_node.admin import routes
from marketplace_node.admin.backend import NodeAdmin
from marketplace_node.drain import DrainCoordinator
from marketplace_node.policy.enforcer import PolicyEnforcer
from marketplace_node.policy.escalation import Offence
from marketplace_protocol.admin import (
    DrainStatus,
    ErrorBody,
    LocalBans,
    Members,
    NodeStatus,
    PeerInfo,
    PolicyApplied,
    PolicyDocument,
)
from marketplace_protocol.clock import FakeClock
from pydantic import SecretStr

TOKEN = "s3cr3t-admin-token-value"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
NODE = "node-self-000000"

Client = TestClient[web.Request, web.Application]


class Node:
    """The parts the admin API drives, real except what only the node core knows."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.enforcer = PolicyEnforcer(self.clock, node_id=NODE)
        self.drain = DrainCoordinator(self.clock, timeout=5)
        self.members: list[Members] = []

        async def status() -> NodeStatus:
            policy = self.enforcer.status
            return NodeStatus(
                peer_id=NODE,
                peers=[
                    PeerInfo(peer_id=f"peer{i:012d}", address=f"http://10.0.0.{i}:7070")
                    for i in range(5)
                ],
                policy_version=policy.version,
                policy_hash=policy.hash,
                draining=not self.drain.ready,
                in_flight=self.drain.in_flight,
            )

        async def set_members(members: Members) -> None:
            self.members.append(members)

        self.admin = NodeAdmin(
            enforcer=self.enforcer, drain=self.drain, status=status, set_members=set_members
        )


@pytest.fixture
def node() -> Node:
    return Node()


async def serve(node: Node, token: SecretStr | None) -> Client:
    app = web.Application()
    routes.add_admin_routes(app, node.admin, token)
    client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def client(node: Node) -> AsyncIterator[Client]:
    client = await serve(node, SecretStr(TOKEN))
    yield client
    await client.close()


async def error_of(response: Any) -> ErrorBody:
    return ErrorBody.model_validate_json(await response.read())


def policy(version: int, **extra: Any) -> bytes:
    return (
        PolicyDocument.model_validate({"version": version, **extra})
        .model_dump_json(by_alias=True)
        .encode()
    )


# -- authentication -------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
async def test_refuses_without_the_right_token(client: Client, headers: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/status"),
        ("PUT", "/policy"),
        ("POST", "/drain"),
        ("GET", "/bans/local"),
        ("GET", "/no-such-route"),
    ]:
        response = await client.request(method, f"/admin/v1{path}", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await error_of(response)).code == "unauthenticated"


async def test_without_a_configured_token_everything_is_refused(node: Node) -> None:
    client = await serve(node, None)
    try:
        for headers in ({}, AUTH, {"Authorization": "Bearer "}):
            response = await client.get("/admin/v1/status", headers=headers)
            assert response.status == 401
    finally:
        await client.close()


async def test_token_is_compared_in_constant_time(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real: Callable[[bytes, bytes], bool] = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert (await client.get("/admin/v1/status", headers=AUTH)).status == 200
    assert (await client.get("/admin/v1/status")).status == 401
    assert calls == [(TOKEN.encode(), TOKEN.encode()), (b"", TOKEN.encode())]


# -- policy ---------------------------------------------------------------------------


async def test_policy_put_applies_and_is_idempotent(client: Client, node: Node) -> None:
    response = await client.put("/admin/v1/policy", data=policy(3), headers=AUTH)
    assert response.status == 200
    applied = PolicyApplied.model_validate_json(await response.read())
    assert applied.version == 3
    assert node.enforcer.status.version == 3
    again = await client.put("/admin/v1/policy", data=policy(3), headers=AUTH)
    assert again.status == 200
    assert PolicyApplied.model_validate_json(await again.read()) == applied
    status = NodeStatus.model_validate_json(
        await (await client.get("/admin/v1/status", headers=AUTH)).read()
    )
    assert (status.policy_version, status.policy_hash) == (3, applied.hash)


async def test_policy_older_than_applied_is_409_stale(client: Client) -> None:
    await client.put("/admin/v1/policy", data=policy(5), headers=AUTH)
    response = await client.put("/admin/v1/policy", data=policy(4), headers=AUTH)
    assert response.status == 409
    body = await error_of(response)
    assert body.code == "stale_policy"
    assert body.details == {"appliedVersion": "5"}


async def test_same_version_other_content_is_409_conflict(client: Client) -> None:
    await client.put("/admin/v1/policy", data=policy(5), headers=AUTH)
    other = policy(5, rateLimits={"maxPendingQueries": 3})
    response = await client.put("/admin/v1/policy", data=other, headers=AUTH)
    assert response.status == 409
    assert (await error_of(response)).code == "conflict"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"{not json", "Invalid JSON"),
        (b"", "Invalid JSON"),
        (b'{"version": 1, "surprise": true}', "surprise"),
        (b'{"version": "one"}', "version"),
        (b'{"version": 1, "bans": [{"cidr": "10.0.0.0/99"}]}', "bans.0"),
        (b'{"version": 1, "bans": [{"peerId": "x", "cidr": "10.0.0.0/8"}]}', "bans.0"),
        (b'{"version": 1, "rateLimits": {"global": {"rate": "nan", "burst": 1}}}', "rate"),
        (b"[]", "validation error"),
    ],
)
async def test_invalid_policy_is_400_with_a_concise_message(
    client: Client, data: bytes, fragment: str
) -> None:
    response = await client.put("/admin/v1/policy", data=data, headers=AUTH)
    assert response.status == 400
    body = await error_of(response)
    assert body.code == "invalid_input"
    assert fragment in body.message
    assert len(body.message) < 700


async def test_validation_messages_do_not_echo_the_input(client: Client) -> None:
    data = b'{"version": 1, "hash": "' + b"A" * 500 + b'", "token": "hunter2-secret"}'
    response = await client.put("/admin/v1/policy", data=data, headers=AUTH)
    assert response.status == 400
    text = (await response.read()).decode()
    assert "hunter2" not in text
    assert "AAAAAAAAAA" not in text


async def test_oversized_bodies_are_413_declared_or_streamed(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "POLICY_BODY_MAX", 1_000)
    big = policy(1, hash="h" * 10) + b" " * 2_000
    response = await client.put("/admin/v1/policy", data=big, headers=AUTH)
    assert response.status == 413
    assert (await error_of(response)).code == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 200

    response = await client.put("/admin/v1/policy", data=chunks(), headers=AUTH)
    assert response.status == 413


async def test_gzip_bodies_are_inflated_within_the_limit(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {**AUTH, "Content-Encoding": "gzip"}
    response = await client.put("/admin/v1/policy", data=gzip.compress(policy(2)), headers=headers)
    assert response.status == 200
    monkeypatch.setattr(routes, "POLICY_BODY_MAX", 10_000)
    bomb = gzip.compress(b" " * 5_000_000)
    assert len(bomb) < 10_000
    response = await client.put("/admin/v1/policy", data=bomb, headers=headers)
    assert response.status == 413
    odd = {**AUTH, "Content-Encoding": "br"}
    assert (await client.put("/admin/v1/policy", data=b"x", headers=odd)).status == 400


# -- bans, members, drain ---------------------------------------------------------------


async def test_local_bans(client: Client, node: Node) -> None:
    node.enforcer.record("peer-aaaaaaaaaaaa", "10.0.0.1", Offence.LOW_REPUTATION)
    response = await client.get("/admin/v1/bans/local", headers=AUTH)
    assert response.status == 200
    bans = LocalBans.model_validate_json(await response.read())
    assert bans.peer_id == NODE
    assert [(b.peer_id, b.reason) for b in bans.bans] == [("peer-aaaaaaaaaaaa", "low_reputation")]


async def test_members_put(client: Client, node: Node) -> None:
    members = Members.model_validate({"members": [{"address": "http://127.1.0.9:7070"}]})
    data = members.model_dump_json(by_alias=True)
    response = await client.put("/admin/v1/members", data=data, headers=AUTH)
    assert response.status == 204
    assert node.members == [members]
    bad = await client.put("/admin/v1/members", data=b'{"members": [{}]}', headers=AUTH)
    assert bad.status == 400


async def test_drain_post_and_get(client: Client, node: Node) -> None:
    response = await client.post("/admin/v1/drain", headers=AUTH)
    assert response.status == 202
    status = DrainStatus.model_validate_json(await response.read())
    assert status.state in ("draining", "drained")
    assert not node.drain.ready
    await node.drain.wait()
    response = await client.get("/admin/v1/drain", headers=AUTH)
    assert DrainStatus.model_validate_json(await response.read()).state == "drained"
    again = await client.post("/admin/v1/drain", json={"timeoutSeconds": 10}, headers=AUTH)
    assert again.status == 202  # idempotent


@pytest.mark.parametrize(
    ("path", "content_type", "data"),
    [
        ("/admin/v1/policy", "text/plain", b'{"version": 1}'),
        ("/admin/v1/policy", "application/x-www-form-urlencoded", b"version=1"),
        ("/admin/v1/members", "multipart/form-data; boundary=x", b"--x--"),
        ("/admin/v1/members", "application/jsonp", b"{}"),
        ("/admin/v1/drain", "text/plain", b'{"timeoutSeconds": 1}'),
        ("/admin/v1/drain", "", b'{"timeoutSeconds": 1}'),  # aiohttp: application/octet-stream
    ],
)
async def test_non_json_bodies_are_415_and_change_nothing(
    client: Client, node: Node, path: str, content_type: str, data: bytes
) -> None:
    headers = {"Authorization": AUTH["Authorization"]}
    if content_type:
        headers["Content-Type"] = content_type
    method = client.post if path.endswith("drain") else client.put
    response = await method(path, data=data, headers=headers)
    assert response.status == 415
    assert (await error_of(response)).code == "unsupported_media_type"
    assert node.members == []
    assert node.drain.ready
    status = await client.get("/admin/v1/status", headers=AUTH)
    assert NodeStatus.model_validate_json(await status.read()).policy_version is None


async def test_json_media_types_with_parameters_or_suffix_are_accepted(client: Client) -> None:
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        headers = {**AUTH, "Content-Type": content_type}
        response = await client.put("/admin/v1/policy", data=policy(1), headers=headers)
        assert response.status == 200, content_type


async def test_drain_body_is_validated(client: Client) -> None:
    response = await client.post("/admin/v1/drain", json={"timeoutSeconds": -1}, headers=AUTH)
    assert response.status == 400


async def test_unknown_routes_and_methods_answer_json(client: Client) -> None:
    missing = await client.get("/admin/v1/nope", headers=AUTH)
    assert missing.status == 404
    assert (await error_of(missing)).code == "not_found"
    wrong = await client.delete("/admin/v1/policy", headers=AUTH)
    assert wrong.status == 405
    assert (await error_of(wrong)).code == "method_not_allowed"
    assert "PUT" in wrong.headers["Allow"]


async def test_large_policies_pass_a_root_app_with_a_small_body_limit(node: Node) -> None:
    app = web.Application(client_max_size=256 * 1024)  # the node's client API limit
    routes.add_admin_routes(app, node.admin, SecretStr(TOKEN))
    bans = [{"peerId": f"peer-{i:012d}", "reason": "r" * 40} for i in range(20_000)]
    data = policy(7, bans=bans)
    assert len(data) > 2 * 1024 * 1024
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.put("/admin/v1/policy", data=io.BytesIO(data), headers=AUTH)
        assert response.status == 200
    assert node.enforcer.status.fleet_bans == 20_000


# -- status ---------------------------------------------------------------------------


async def test_status_lists_as_many_peers_as_asked_and_counts_all(client: Client) -> None:
    """Issue 15: the operator asks for a few; every peer of a 1,000-node fleet per poll
    was O(N^2) per poll round."""
    full = NodeStatus.model_validate_json(
        await (await client.get("/admin/v1/status", headers=AUTH)).read()
    )
    assert len(full.peers) == 5
    assert full.peer_count is None  # an old operator's answer: no field it cannot read
    for asked, listed in ((2, 2), (0, 0), (9, 5)):
        got = await client.get(f"/admin/v1/status?peers={asked}", headers=AUTH)
        status = NodeStatus.model_validate_json(await got.read())
        assert status.peers == full.peers[:listed]
        assert status.peer_count == 5
        assert status.all_peers == 5
    for bad in ("-1", "x", "1e3", "10000000"):
        got = await client.get(f"/admin/v1/status?peers={bad}", headers=AUTH)
        assert got.status == 400
        assert (await error_of(got)).code == "invalid_input"
