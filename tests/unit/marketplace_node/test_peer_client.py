"""The SSRF guard: with peer networks set, the node calls IP literals inside them only."""

from __future__ import annotations

import ipaddress

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from marketplace_node.config import NodeSettings
from marketplace_node.peer_client import Network, PeerClient, check_destination
from marketplace_protocol import identity
from marketplace_protocol.clock import SystemClock
from marketplace_protocol.errors import DestinationRefused, UpstreamFailed

LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"),)
PODS: tuple[Network, ...] = (
    ipaddress.ip_network("10.244.0.0/16"),
    ipaddress.ip_network("fd00::/8"),
)


@pytest.mark.parametrize(
    ("url", "networks"),
    [
        ("http://127.1.0.5:7070", LOOPBACK),
        ("http://127.0.0.1", LOOPBACK),
        ("http://10.244.3.7:7070", PODS),
        ("http://[fd00::1]:7070", PODS),
        ("http://example.org:7070", ()),  # no networks configured: anything goes
    ],
)
def test_allowed(url: str, networks: tuple[Network, ...]) -> None:
    check_destination(url, networks)


@pytest.mark.parametrize(
    ("url", "networks"),
    [
        ("http://8.8.8.8:53", LOOPBACK),
        ("http://10.1.2.3:7070", LOOPBACK),
        ("http://localhost:7070", LOOPBACK),  # a name: would need DNS
        ("http://1.2:80", LOOPBACK),  # inet_aton shorthand for 1.0.0.2
        ("http://[::1]:7070", PODS),
        ("not a url", LOOPBACK),
        ("http://:80", LOOPBACK),
    ],
)
def test_refused(url: str, networks: tuple[Network, ...]) -> None:
    with pytest.raises(DestinationRefused) as info:
        check_destination(url, networks)
    # Callers treat it like any failed peer call, but it is not worth retrying.
    assert isinstance(info.value, UpstreamFailed)
    assert info.value.code == "destination_refused"
    assert not info.value.retryable


def test_peer_networks_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPLACE_NODE_PEER_NETWORKS", "127.0.0.0/8, fd00::/8")
    settings = NodeSettings()
    assert [str(n) for n in settings.peer_networks] == ["127.0.0.0/8", "fd00::/8"]


def test_bad_peer_networks_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPLACE_NODE_PEER_NETWORKS", "127.0.0.0/33")
    with pytest.raises(ValueError, match="peer_networks"):
        NodeSettings()


async def test_a_reply_is_read_whole_however_it_arrives() -> None:
    """A reply larger than what one read of the stream gives (aiohttp buffers about
    128 KiB): an anti-entropy page of 500 changes is ~200 KiB, and was cut short."""
    reply = bytes(range(256)) * 4096  # 1 MiB

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=reply)

    app = web.Application()
    app.router.add_get("/big", big)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            client = PeerClient(
                session,
                identity.Identity.generate(),
                SystemClock(),
                timeout=10,
                networks=(ipaddress.ip_network("127.0.0.0/8"),),
            )
            base = str(server.make_url("")).rstrip("/")
            assert await client.request("GET", base, "/big") == reply
    finally:
        await server.close()
