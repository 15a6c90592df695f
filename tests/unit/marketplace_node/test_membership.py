"""Joining: back-off while no configured peer answers, and a prompt round on new members."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
from marketplace_node import membership
from marketplace_node.config import NodeSettings
from marketplace_protocol.admin import Member, Members
from pydantic import SecretStr

from tests.support import signed
from tests.support.net import free_port
from tests.support.node_server import Served, serving
from tests.support.poll import until

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


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def _node(
    exits: AsyncExitStack, data: Path, port: int, bootstrap: list[str] | None = None
) -> Served:
    settings = NodeSettings(
        data_dir=data,
        port=port,
        admin_token=SecretStr(TOKEN),
        bootstrap_peers=bootstrap or [],
        liveness_interval_seconds=INTERVAL,
        sync_interval_seconds=INTERVAL,
    )
    return await exits.enter_async_context(serving(settings))


async def test_a_node_joins_a_bootstrap_peer_that_starts_later(
    stack: AsyncExitStack, tmp_path: Path
) -> None:
    port_b = free_port()
    a = (await _node(stack, tmp_path / "a", free_port(), [f"http://127.0.0.1:{port_b}"])).service
    await asyncio.sleep(1.0)  # a's first hellos fail: it is backing off, not sleeping 60 s
    assert not a.joined()
    assert not a.ready()
    b = (await _node(stack, tmp_path / "b", port_b)).service
    await until(a.joined, within=5.0)
    assert b.identity.peer_id in a.peers
    assert a.identity.peer_id in b.peers  # the hello recorded a at b too
    assert a.ready()


async def test_new_members_are_greeted_at_once(stack: AsyncExitStack, tmp_path: Path) -> None:
    port_b = free_port()
    port_a = free_port()
    served_a = await _node(stack, tmp_path / "a", port_a)
    a = served_a.service
    b = (await _node(stack, tmp_path / "b", port_b)).service
    await asyncio.sleep(0.3)  # both ran their first round: no configured peers, nothing to do
    assert len(a.peers) == 0
    members = Members(members=[Member(address=f"http://127.0.0.1:{port_b}", name="b")])
    async with aiohttp.ClientSession() as http:
        resp = await http.put(
            served_a.private.make_url("/admin/v1/members"),
            data=members.model_dump_json(by_alias=True),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        assert resp.status < 300, await resp.text()
    await until(lambda: b.identity.peer_id in a.peers, within=3.0)


async def test_new_nodes_stay_peers_after_reading_each_others_lost_disk_notice(
    stack: AsyncExitStack, tmp_path: Path
) -> None:
    """Every node starts on an empty store and says so (`peer_leaving` for its old copies);
    a peer that reads that notice in the node's log must not drop the node it just met (a
    two-node fleet went unready, and publishes found no one to copy to)."""
    port_b = free_port()
    a = (await _node(stack, tmp_path / "a", free_port(), [f"http://127.0.0.1:{port_b}"])).service
    b = (await _node(stack, tmp_path / "b", port_b)).service
    await until(a.joined, within=5.0)
    await until(lambda: a.last_seq >= 2, within=5.0)  # its own notice, then b's, by the pull
    await asyncio.sleep(0.2)
    assert b.identity.peer_id in a.peers
    assert a.ready()


async def test_a_node_nobody_lists_catches_up_from_the_first_peer_that_greets_it(
    stack: AsyncExitStack, tmp_path: Path
) -> None:
    """The first node of a fleet run by hand, or one reborn on an empty disk, meets its peers
    only when they greet it: it pulls from the first at once, not at its first anti-entropy
    round (until then the lost-disk integration test's reborn node answered 404)."""
    port_a = free_port()
    b = (await _node(stack, tmp_path / "b", free_port(), [f"http://127.0.0.1:{port_a}"])).service
    meta = signed.package("held-by-b")
    assert await b.accept(signed.package_announcement(meta), sender=None, forward=False)
    a = (await _node(stack, tmp_path / "a", port_a)).service  # greets no one
    await until(lambda: b.identity.peer_id in a.peers, within=5.0)  # b's join retry
    await until(lambda: a.catalogue.get(meta.id) is not None, within=3.0)
