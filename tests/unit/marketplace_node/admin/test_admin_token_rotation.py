"""The admin token follows its mounted file, with a bounded overlap, end to end with the
operator's client: a rotated or recreated `<fleet>-admin` Secret does not lock the
operator out of running nodes (issue #19, defects 1 and 7)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from marketplace_node.admin import auth, routes
from marketplace_node.admin.backend import NodeAdmin
from marketplace_node.drain import DrainCoordinator
from marketplace_node.policy.enforcer import PolicyEnforcer
from marketplace_operator import errors
from marketplace_operator.admintoken import AdminTokens
from marketplace_operator.nodeclient import NodeClient
from marketplace_protocol.admin import Members, NodeStatus
from marketplace_protocol.clock import FakeClock


def admin() -> NodeAdmin:
    clock = FakeClock()

    async def status() -> NodeStatus:
        return NodeStatus(peer_id="node-self-000000")

    async def set_members(members: Members) -> None:
        return None

    return NodeAdmin(
        enforcer=PolicyEnforcer(clock, node_id="node-self-000000"),
        drain=DrainCoordinator(clock, timeout=5),
        status=status,
        set_members=set_members,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def swap(path: Path, token: str) -> None:
    """Replace the file the way a kubelet updates a Secret volume (a new inode)."""
    tmp = path.with_suffix(".new")
    tmp.write_text(token + "\n")
    os.replace(tmp, path)


def test_the_token_file_is_followed_and_the_old_token_accepted_for_the_overlap(
    tmp_path: Path,
) -> None:
    path, clock = tmp_path / "token", Clock()
    swap(path, "first")
    source = auth.TokenFile(path, overlap=60, clock=clock)
    assert [t.get_secret_value() for t in source.accepted()] == ["first"]
    swap(path, "second")
    assert [t.get_secret_value() for t in source.accepted()] == ["second", "first"]
    clock.now += 61
    assert [t.get_secret_value() for t in source.accepted()] == ["second"]


def test_a_vanished_or_empty_file_keeps_the_last_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    swap(path, "first")
    source = auth.TokenFile(path, overlap=60, clock=Clock())
    swap(path, "")
    assert [t.get_secret_value() for t in source.accepted()] == ["first"]
    path.unlink()
    assert [t.get_secret_value() for t in source.accepted()] == ["first"]


def test_no_file_accepts_nothing(tmp_path: Path) -> None:
    source = auth.TokenFile(tmp_path / "absent", overlap=60)
    assert source.accepted() == []
    assert not auth.accepts(source.accepted, "anything")
    assert not auth.accepts(source.accepted, None)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    path = tmp_path / "token"
    swap(path, "old-token")
    app = web.Application()
    routes.add_admin_routes(app, admin(), auth.TokenFile(path, overlap=300).accepted)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}", path
    await server.close()


async def test_the_operator_keeps_reaching_nodes_across_a_rotation(
    served: tuple[str, Path],
) -> None:
    base, path = served
    secret = {"token": "old-token", "rv": "1"}

    async def read(namespace: str, fleet: str) -> str | None:
        return secret["token"]

    tokens = AdminTokens(read, overlap=300)
    client = NodeClient.create(alternatives=tokens.alternatives)
    try:

        async def poll() -> None:
            seen = {"metadata": {"uid": "u", "resourceVersion": secret["rv"]}}
            await client.status(base, await tokens.get("ns", "f", seen), peers=0)

        await poll()
        # The Secret changes; the operator sees it first, the kubelet syncs the volume later.
        secret.update(token="new-token", rv="2")
        await poll()  # 401 with the new token, then the old one: accepted
        swap(path, "new-token")
        await poll()  # the node follows its file
        # A token neither side knows is refused, and says so.
        with pytest.raises(errors.NodeRefused) as refused:
            await client.status(base, "stranger", peers=0)
        assert refused.value.status == 401
    finally:
        await client.close()


async def test_a_node_that_kept_its_start_token_would_lock_the_operator_out(
    served: tuple[str, Path],
) -> None:
    """Before the fix the operator had only the new token and the node only the old one."""
    base, _ = served
    client = NodeClient.create()
    try:
        with pytest.raises(errors.NodeRefused) as refused:
            await client.status(base, "new-token", peers=0)
        assert refused.value.status == 401
    finally:
        await client.close()
