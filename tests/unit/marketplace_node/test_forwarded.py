"""The client's address behind trusted proxies: the pure walk, and the door keyed by it over
real HTTP (a banned client cannot escape its ban by forging X-Forwarded-For)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from ipaddress import ip_network
from pathlib import Path

import aiohttp
import pytest
from marketplace_node.config import NodeSettings
from marketplace_node.forwarded import client_address
from marketplace_protocol.admin import BanEntry, ErrorBody, PolicyDocument

from tests.support.node_server import Served, serving

PROXIES = [ip_network("10.0.0.0/8")]


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("192.0.2.1", ["198.51.100.7"], "192.0.2.1"),  # not a proxy: the header is ignored
        ("10.0.0.2", [], "10.0.0.2"),  # a proxy with no header: itself
        ("10.0.0.2", ["198.51.100.7"], "198.51.100.7"),
        ("10.0.0.2", ["203.0.113.9, 198.51.100.7"], "198.51.100.7"),  # the forged left part
        ("10.0.0.2", ["203.0.113.9", "198.51.100.7, 10.0.0.3"], "198.51.100.7"),  # two proxies
        ("10.0.0.2", ["10.0.0.4, 10.0.0.3"], "10.0.0.4"),  # all proxies: the leftmost
        ("10.0.0.2", ["198.51.100.7, garbage"], "10.0.0.2"),  # unreadable: stop at the proxy
        ("10.0.0.2", ["2001:db8::5"], "2001:db8::5"),
    ],
)
def test_the_client_is_the_rightmost_address_not_a_trusted_proxy(
    peer: str, header: list[str], client: str
) -> None:
    assert client_address(peer, header, PROXIES) == client


@pytest.fixture
async def node(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    settings = NodeSettings(data_dir=tmp_path, port=0, trusted_proxies=request.param)
    async with serving(settings) as served:
        yield served


async def _status(served: Served, forwarded_for: str | None) -> tuple[int, str | None]:
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    async with (
        aiohttp.ClientSession() as http,
        http.get(served.public.make_url("/api/v1/search?q=x"), headers=headers) as resp,
    ):
        body = await resp.read()
        return resp.status, ErrorBody.model_validate_json(body).code if resp.status >= 400 else None


def _ban(served: Served, cidr: str) -> None:
    served.service.enforcer.apply(PolicyDocument(version=1, bans=[BanEntry(cidr=cidr)]))


@pytest.mark.parametrize("node", [[], [ip_network("10.0.0.0/8")]], indirect=True)
async def test_a_banned_client_cannot_escape_its_ban_by_forging_the_header(node: Served) -> None:
    """The test client (127.0.0.1) is no trusted proxy: whatever it forwards, it is itself."""
    _ban(node, "127.0.0.1/32")
    assert await _status(node, None) == (403, "peer_banned")
    assert await _status(node, "198.51.100.7") == (403, "peer_banned")
    assert await _status(node, "198.51.100.7, 203.0.113.9") == (403, "peer_banned")


@pytest.mark.parametrize("node", [[ip_network("127.0.0.0/8")]], indirect=True)
async def test_behind_a_trusted_proxy_the_ban_hits_the_forwarded_client_only(
    node: Served,
) -> None:
    """The proxy (127.0.0.1) appends the address it received from; what the client wrote
    on the left is not believed."""
    _ban(node, "203.0.113.9/32")
    assert await _status(node, "203.0.113.9") == (403, "peer_banned")
    assert await _status(node, "198.51.100.7, 203.0.113.9") == (403, "peer_banned")
    assert await _status(node, "198.51.100.7") == (200, None)
    assert await _status(node, "203.0.113.9, 198.51.100.7") == (200, None)  # another client
    assert await _status(node, None) == (200, None)  # the proxy's own requests
