"""The public listener's PROXY protocol v2 gate: a trusted balancer's header names the client.

Each connection gets a `ProxyGate` in front of aiohttp's handler. From an address in
`trusted_proxies` the gate reads a v2 header (`proxyv2.parse`) before the HTTP parser
sees a byte, and the handler then sees the header's source as the connection's
address (`request.remote`), so bans, rate limits and offences key on the client. A
connection from a trusted proxy without a header keeps the proxy's address; an invalid
header, or none within `HEADER_SECONDS`, closes the connection.

From any other address nothing is read as a header: the bytes go to the HTTP parser as
they are, so a forged header is a malformed request (400) and never moves a client,
banned or not, to another address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

from aiohttp import web

from marketplace_node import proxyv2
from marketplace_node.forwarded import Network

logger = logging.getLogger(__name__)
HEADER_SECONDS: Final = 5.0


def trusted(peername: Any, networks: Sequence[Network]) -> bool:
    """Is the connection's address (a socket peername) inside `networks`?"""
    if not isinstance(peername, tuple) or not peername:
        return False
    try:
        address = ipaddress.ip_address(peername[0])
    except ValueError:
        return False
    return any(address in net for net in networks)


class ProxyGate(asyncio.Protocol):
    """Reads a trusted proxy's header, then hands the connection to `inner` (aiohttp's
    `RequestHandler`) with the client's address, and forwards everything after."""

    def __init__(self, inner: asyncio.Protocol, networks: Sequence[Network]) -> None:
        self._inner = inner
        self._networks = networks
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._started = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not trusted(transport.get_extra_info("peername"), self._networks):
            self._start(None, b"")  # not a proxy we trust: its bytes are HTTP, nothing else
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(HEADER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        if self._started:
            self._inner.data_received(data)
            return
        self._buffer += data
        try:
            header = proxyv2.parse(self._buffer)
        except proxyv2.ProxyHeaderError as exc:
            logger.info("closing a trusted proxy's connection: %s", exc)
            assert self._transport is not None
            self._transport.close()
            return
        if header is None:
            return  # more bytes to come
        self._start(header.source, self._buffer[header.length :])

    def _start(self, source: tuple[str, int] | None, rest: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if self._timer is not None:
            self._timer.cancel()
        if source is not None:
            # asyncio's socket transports answer get_extra_info() from this dict; aiohttp
            # reads "peername" once, for `request.remote` (tests/unit/.../test_proxy_gate).
            transport._extra["peername"] = source  # type: ignore[attr-defined]
        self._started, self._buffer = True, b""
        self._inner.connection_made(transport)
        if rest:
            self._inner.data_received(rest)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._started else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._started:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._started:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._started:
            self._inner.resume_writing()


class ProxyProtocolSite(web.TCPSite):
    """aiohttp's TCP site with a `ProxyGate` before each connection's handler."""

    __slots__ = ("_networks",)

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, networks: Sequence[Network]
    ) -> None:
        super().__init__(runner, host, port, backlog=1024)
        self._networks = tuple(networks)

    async def start(self) -> None:
        self._runner._reg_site(self)
        server = self._runner.server
        assert server is not None
        make: Callable[[], asyncio.Protocol] = server
        networks = self._networks
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ProxyGate(make(), networks), self._host, self._port, backlog=self._backlog
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]
