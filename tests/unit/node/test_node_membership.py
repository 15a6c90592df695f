"""Joining: back-off while no configured peer answers, and a prompt round on new members."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from marketplace_node import app, identity, membership
from marketplace_node.admin.models import Member, Members
from marketplace_node.clock import SystemClock
from marketplace_node.config import NodeSettings
from marketplace_node.metrics import NodeMetrics
from marketplace_node.service import NodeService
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

INTERVAL = 60.0  # far beyond every deadline below: only a retry or a nudge can join in time
TOKEN = "s3cret"


@pytest.mark.parametrize(
    ("previous", "interval", "expected"),
    [
        (None, 5.0, membership.JOIN_RETRY_FIRST_SECONDS),
        (None, 0.1, 0.1),  # never beyond the interval
        (0.25, 5.0, 0.5),
        (2.0, 5.0, 4.0),
        (4.0, 5.0, 5.0),
        (5.0, 5.0, 5.0),
    ],
)
def test_join_retry_backs_off_up_to_the_interval(
    previous: float | None, interval: float, expected: float
) -> None:
    assert membership.join_retry_delay(previous, interval) == expected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def _node(
    exits: AsyncExitStack, data: Path, port: int, bootstrap: list[str] | None = None
) -> NodeService:
    settings = NodeSettings(
        data_dir=data,
        port=port,
        admin_token=SecretStr(TOKEN),
        bootstrap_peers=bootstrap or [],
        liveness_interval_seconds=INTERVAL,
        sync_interval_seconds=INTERVAL,
    )
    service = NodeService(
        settings,
        identity=identity.Identity.generate(),
        clock=SystemClock(),
        metrics=NodeMetrics(CollectorRegistry()),
    )
    server = TestServer(app.build_app(service), host="127.0.0.1", port=port)
    await server.start_server()
    exits.push_async_callback(server.close)
    return service


async def _until(predicate: Callable[[], bool], deadline: float) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not predicate():
        if loop.time() - started > deadline:
            raise AssertionError(f"not within {deadline} s")
        await asyncio.sleep(0.02)
    return loop.time() - started


async def test_a_node_joins_a_bootstrap_peer_that_starts_later(
    stack: AsyncExitStack, tmp_path: Path
) -> None:
    port_b = _free_port()
    a = await _node(stack, tmp_path / "a", _free_port(), [f"http://127.0.0.1:{port_b}"])
    await asyncio.sleep(1.0)  # a's first hellos fail: it is backing off, not sleeping 60 s
    assert not a.joined()
    assert not a.ready()
    b = await _node(stack, tmp_path / "b", port_b)
    await _until(a.joined, deadline=5.0)
    assert b.identity.peer_id in a.peers
    assert a.identity.peer_id in b.peers  # the hello recorded a at b too
    assert a.ready()


async def test_new_members_are_greeted_at_once(stack: AsyncExitStack, tmp_path: Path) -> None:
    port_b = _free_port()
    port_a = _free_port()
    a = await _node(stack, tmp_path / "a", port_a)
    b = await _node(stack, tmp_path / "b", port_b)
    await asyncio.sleep(0.3)  # both ran their first round: no configured peers, nothing to do
    assert len(a.peers) == 0
    members = Members(members=[Member(address=f"http://127.0.0.1:{port_b}", name="b")])
    async with aiohttp.ClientSession() as http:
        resp = await http.put(
            f"http://127.0.0.1:{port_a}/admin/v1/members",
            data=members.model_dump_json(by_alias=True),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        assert resp.status < 300, await resp.text()
    await _until(lambda: b.identity.peer_id in a.peers, deadline=3.0)
