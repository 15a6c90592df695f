"""Signed requests to other peers over the process's one `aiohttp.ClientSession`.

Over https a peer's certificate is verified by the session's context (the fleet's CA,
marketplace_node.tls) for `server_name` when one is set: members dial each other by pod
address, and what every member's certificate carries is the fleet's name.

aiohttp exceptions never leave this module: they become `UpstreamFailed` or
`UpstreamTimeout`, and a peer's `ErrorBody` answer becomes `PeerAnswered` (an
`UpstreamFailed`) carrying the peer's code in `details`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import aiohttp
from marketplace_protocol.clock import Clock
from marketplace_protocol.errors import (
    DestinationRefused,
    StorageFull,
    UpstreamFailed,
    UpstreamTimeout,
)
from marketplace_protocol.identity import Identity
from yarl import URL

from marketplace_node import signing
from marketplace_node.breaker import Breakers

MAX_REPLY_BYTES = 4 * 1024 * 1024

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PeerAnswered(UpstreamFailed):
    """A peer's error answer: its status and code in `details`; its message (`answer`)
    kept aside, for our own decisions only (it is the peer's text, not ours to show)."""

    def __init__(self, message: str, *, answer: str, details: dict[str, str]) -> None:
        super().__init__(message, details=details)
        self.answer = answer


def check_destination(base_url: str, networks: tuple[Network, ...]) -> None:
    """Refuse a peer address outside `networks` (empty: any). Pure.

    With networks set, the host must be an IP literal inside one of them: a
    name would need DNS, and a peer-supplied name or address must not aim the
    node at anything but its fleet.
    """
    if not networks:
        return
    host = urllib.parse.urlsplit(base_url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise DestinationRefused(
            "peer address is not an IP literal", details={"peer": base_url[:80]}
        ) from None
    if not any(address in net for net in networks):
        raise DestinationRefused(
            "peer address outside the allowed networks", details={"peer": base_url[:80]}
        )


class PeerClient:
    """Signs, sends, and keeps a circuit breaker per peer address (`breaker.Breakers`):
    a peer that keeps failing is refused at once for a while instead of costing a timeout."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        ident: Identity,
        clock: Clock,
        *,
        timeout: float,
        breakers: Breakers | None = None,
        networks: tuple[Network, ...] = (),
        server_name: str | None = None,
    ) -> None:
        self._session = session
        self._server_name = server_name
        self._networks = networks
        self.breakers = breakers or Breakers(clock)
        self._identity = ident
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def _signed(
        self, method: str, base_url: str, path: str, params: dict[str, str] | None, body: bytes
    ) -> tuple[URL, dict[str, str]]:
        query = urllib.parse.urlencode(sorted((params or {}).items()))
        headers = signing.sign_request(
            self._identity,
            method=method,
            path=path,
            query=query,
            body=body,
            created=int(self._clock.wall()),
        )
        if body:
            headers["Content-Type"] = "application/json"
        url = URL(base_url.rstrip("/") + path + (f"?{query}" if query else ""), encoded=True)
        return url, headers

    async def request(
        self,
        method: str,
        base_url: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        within: float | None = None,
    ) -> bytes:
        """One signed request; the 2xx reply body. Extra `headers` are not signed (hints
        only); `within` overrides the default timeout (seconds) for slow calls."""
        check_destination(base_url, self._networks)
        url, signed = self._signed(method, base_url, path, params, body)
        headers = signed | (headers or {})
        self.breakers.check(base_url)
        with self._transport_errors(base_url, late="did not answer", failed="unreachable"):
            async with self._session.request(
                method,
                url,
                data=body or None,
                headers=headers,
                timeout=self._timeout if within is None else aiohttp.ClientTimeout(total=within),
                server_hostname=self._tls_name(url),
            ) as resp:
                payload = await _read_bounded(resp, MAX_REPLY_BYTES + 1)
        self._health(base_url, resp.status)
        _raise_for(resp.status, payload, base_url)
        if len(payload) > MAX_REPLY_BYTES:
            raise UpstreamFailed("peer reply too large", details={"peer": base_url})
        return payload

    def _tls_name(self, url: URL) -> str | None:
        """The name an https peer's certificate must carry (the fleet's), not its address."""
        return self._server_name if url.scheme == "https" else None

    def _health(self, base_url: str, status: int) -> None:
        """A 5xx is the peer's trouble; a 4xx is an answer (it is alive and refused us), and
        so is 507 `storage_full`: a peer whose disk is full still serves what it holds."""
        if status >= 500 and status != StorageFull.http_status:
            self.breakers.failure(base_url)
        else:
            self.breakers.success(base_url)

    @asynccontextmanager
    async def stream(
        self, base_url: str, path: str, *, transfer_seconds: float
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """A signed GET whose body is consumed as chunks (content transfer)."""
        check_destination(base_url, self._networks)
        url, headers = self._signed("GET", base_url, path, None, b"")
        self.breakers.check(base_url)
        with self._transport_errors(base_url, late="did not deliver", failed="transfer failed"):
            async with self._session.get(
                url,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=transfer_seconds),
                server_hostname=self._tls_name(url),
            ) as resp:
                self._health(base_url, resp.status)
                if resp.status != 200:
                    _raise_for(resp.status, await resp.content.read(64 * 1024), base_url)
                yield _chunks(resp)

    @contextmanager
    def _transport_errors(self, base_url: str, *, late: str, failed: str) -> Iterator[None]:
        """aiohttp's timeouts and connection errors as ours, each a strike on the peer's
        breaker (what the peer answered is judged by `_health` and `_raise_for`)."""
        try:
            yield
        except TimeoutError as exc:
            self.breakers.failure(base_url)
            raise UpstreamTimeout(f"peer {late} in time", details={"peer": base_url}) from exc
        except aiohttp.ClientError as exc:
            self.breakers.failure(base_url)
            raise UpstreamFailed(
                f"peer {failed}: {type(exc).__name__}", details={"peer": base_url}
            ) from exc


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The reply up to `limit` bytes. Not `content.read(limit)`: that returns what is
    buffered (about 128 KiB), which cut anti-entropy pages short mid-JSON."""
    payload = bytearray()
    while len(payload) < limit:
        chunk = await resp.content.read(limit - len(payload))
        if not chunk:
            break
        payload += chunk
    return bytes(payload)


async def _chunks(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in resp.content.iter_chunked(256 * 1024):
        yield chunk


def _raise_for(status: int, payload: bytes, peer: str) -> None:
    if 200 <= status < 300:
        return
    code, answer = "unknown", ""
    with contextlib.suppress(ValueError, AttributeError):
        error = json.loads(payload)
        code = str(error.get("code", "unknown"))[:64]
        answer = str(error.get("message", ""))[:256]
    raise PeerAnswered(
        f"peer answered {status}",
        answer=answer,
        details={"peer": peer, "status": str(status), "code": code},
    )
