"""A real node's public listener behind the PROXY protocol v2 gate: a trusted balancer's
header names the client (bans then key on it); from anyone else a header is never read,
so a banned client cannot escape its ban by forging one."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from marketplace_node import app, proxyv2, runner
from marketplace_node.config import NodeSettings
from marketplace_node.proxy_gate import ProxyProtocolSite, trusted
from marketplace_protocol.admin import BanEntry, Escalation, PolicyDocument, RateLimits
from pydantic import ValidationError

PROXY, BANNED, CLIENT = "127.0.0.9", "127.0.0.5", "127.0.0.6"
REQUEST = b"GET /api/v1/search?q=x HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n"


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    """A node whose public listener trusts PROXY's headers and bans BANNED."""
    settings = NodeSettings(
        data_dir=tmp_path, port=0, trusted_proxies=[f"{PROXY}/32"], proxy_protocol=True
    )
    service = runner.build_service(settings)
    service.enforcer.apply(
        PolicyDocument(
            version=1,
            bans=[BanEntry(cidr=f"{BANNED}/32", reason="abuse")],
            rate_limits=RateLimits(escalation=Escalation(tarpit_seconds=0)),
        )
    )
    public = web.AppRunner(app.build_apps(service).public)
    await public.setup()
    site = runner.public_site(public, service)
    assert isinstance(site, ProxyProtocolSite)
    await site.start()
    try:
        yield site.port
    finally:
        await public.cleanup()


async def _status(port: int, source: str, *chunks: bytes) -> int | None:
    """The HTTP status answered to `chunks` sent from `source`; None if closed unanswered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)  # separate segments: the gate must reassemble
        line = await asyncio.wait_for(reader.readline(), 5.0)
    finally:
        writer.close()
    return int(line.split()[1]) if line else None


def _header(client: str) -> bytes:
    return proxyv2.build((client, 40000), ("127.0.0.1", 7070))


async def test_a_trusted_proxys_header_names_the_client(port: int) -> None:
    assert await _status(port, PROXY, _header(CLIENT) + REQUEST) == 200
    assert await _status(port, PROXY, _header(BANNED) + REQUEST) == 403  # the ban follows


async def test_a_header_in_pieces_is_reassembled(port: int) -> None:
    header = _header(BANNED)
    assert await _status(port, PROXY, header[:7], header[7:20], header[20:] + REQUEST) == 403


async def test_a_trusted_proxy_without_a_header_is_itself(port: int) -> None:
    assert await _status(port, PROXY, REQUEST) == 200


async def test_a_trusted_proxys_broken_header_closes_the_connection(port: int) -> None:
    broken = proxyv2.SIGNATURE + b"\x11\x11\x00\x00"  # version 1
    assert await _status(port, PROXY, broken + REQUEST) is None


async def test_a_banned_client_cannot_escape_by_forging_a_header(port: int) -> None:
    assert await _status(port, BANNED, REQUEST) == 403
    forged = await _status(port, BANNED, _header(CLIENT) + REQUEST)
    assert forged == 400  # never read as a header: a malformed request, not CLIENT's
    assert await _status(port, CLIENT, _header(BANNED) + REQUEST) == 400  # nor the reverse


@pytest.mark.parametrize(
    ("peername", "expected"),
    [
        ((PROXY, 1), True),
        ((CLIENT, 1), False),
        (("::1", 1, 0, 0), False),
        ("/run/socket", False),
        (None, False),
        (("not-an-ip", 1), False),
    ],
)
def test_only_listed_proxies_are_trusted(peername: object, expected: bool) -> None:
    assert trusted(peername, [ipaddress.ip_network(f"{PROXY}/32")]) is expected


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"proxy_protocol": True}, "needs trusted_proxies"),
        (
            {
                "proxy_protocol": True,
                "trusted_proxies": ["10.0.0.0/8"],
                "tls_cert_file": "/c",
                "tls_key_file": "/k",
            },
            "not supported",
        ),
    ],
)
def test_proxy_protocol_settings_are_checked(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        NodeSettings.model_validate(settings)
