"""THE client of the nodes' admin API (`/admin/v1/`): one aiohttp session, bounded, typed.

Nodes are reached by pod IP (`http://IP:PORT`), never through DNS or Services. Every call
has a timeout; a semaphore bounds concurrent calls so a fleet of hundreds stays cheap.
aiohttp errors never leave this module: they become `errors.NodeUnreachable` or
`errors.NodeRefused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import aiohttp
from marketplace_protocol.admin import (
    STATUS_PEERS_QUERY,
    DrainRequest,
    DrainStatus,
    ErrorBody,
    LocalBans,
    Members,
    NodeStatus,
    PolicyApplied,
    PolicyDocument,
    WireModel,
)
from pydantic import ValidationError

from marketplace_operator import errors

M = TypeVar("M", bound=WireModel)
UNAUTHORIZED: Final = 401
GZIP_ABOVE: Final = 64 * 1024  # bytes of JSON; a 10,000-ban policy is ~1.6 MB, ~0.4 MB gzipped


@dataclass(frozen=True)
class Encoded:
    """A request body serialized once, sent to many nodes."""

    data: bytes
    headers: dict[str, str]


JSON_HEADERS: Final = {"Content-Type": "application/json"}


def encode(body: WireModel) -> Encoded:
    """JSON bytes, gzipped when large (nodes inflate `Content-Encoding: gzip` bodies)."""
    raw = body.model_dump_json(by_alias=True).encode()
    if len(raw) <= GZIP_ABOVE:
        return Encoded(raw, JSON_HEADERS)
    packed = gzip.compress(raw, compresslevel=5, mtime=0)
    return Encoded(packed, {"Content-Type": "application/json", "Content-Encoding": "gzip"})


KEEPALIVE_SECONDS: Final = 60.0
"""How long an idle connection to a node is kept: longer than the routine poll interval
of a 1,000-node fleet (25 s), shorter than the node's aiohttp server keeps it (75 s).
aiohttp's 15 s default closed it before the next poll, so each poll of a big fleet paid
a new TCP connection (py-spy: 5 % of the operator's CPU in a rollout of 1,000, issue 15).
Idle, one costs about 9 KiB: 9 MiB at 1,000 nodes."""
PUSH_PRIORITY_SECONDS: Final = 2.0
"""The longest a node loop's status poll waits for the policy pushes in flight."""
PUSH_LINGER_SECONDS: Final = 0.05  # a push ends and the next of the fleet's starts


class _Pushes:
    """Policy pushes in flight on one session, for the status polls that yield to them.

    At 1,000 nodes the polls (200 a second) took as much of the operator's event loop as
    the pushes of a new policy, and as much of the nodes' (issue 15): a ban reached the
    last node seconds late. The loops' polls are periodic and their gate tolerates a
    poll seconds late (`gate_silence_seconds`), so while a push runs they wait, at most
    `PUSH_PRIORITY_SECONDS`."""

    def __init__(self) -> None:
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._settle: asyncio.TimerHandle | None = None

    def begin(self) -> None:
        self._in_flight += 1
        self._idle.clear()
        if self._settle is not None:
            self._settle.cancel()
            self._settle = None

    def end(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:  # idle once no push followed for a moment
            loop = asyncio.get_running_loop()
            self._settle = loop.call_later(PUSH_LINGER_SECONDS, self._settled)

    def _settled(self) -> None:
        if self._in_flight == 0:
            self._idle.set()

    async def wait(self, limit: float) -> None:
        if not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), limit)


def base_url(pod_ip: str, port: int) -> str:
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    return f"http://{host}:{port}"


class NodeClient:
    """Admin API calls; `on_call(operation)` is told of every call and `on_error(operation)`
    of every failure (for metrics), and
    after a 401 the call is tried again with each of `alternatives(token)` (the fleet's
    token before or after a rotation, while the overlap lasts: `admintoken`)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 3.0,
        concurrency: int = 32,
        on_error: Callable[[str], None] | None = None,
        on_call: Callable[[str], None] | None = None,
        alternatives: Callable[[str], Sequence[str]] | None = None,
        owner: bool = True,
        yields_to_pushes: float = 0.0,
        pushes: _Pushes | None = None,
    ) -> None:
        """`yields_to_pushes`: seconds at most a status poll of this client waits while
        policy pushes are in flight on the session (`_Pushes`); 0: it never waits."""
        self._session = session
        self._yields = yields_to_pushes
        self._pushes = pushes or _Pushes()
        self._owner = owner  # closes the session (not a client `sharing` another's)
        self._alternatives = alternatives or (lambda _token: ())
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._slots = asyncio.Semaphore(concurrency)
        self._on_error = on_error or (lambda _op: None)
        self._on_call = on_call or (lambda _op: None)
        # The policy document pushed to every node of a fleet, encoded once (version, hash).
        self._policy: tuple[tuple[int, str], asyncio.Future[Encoded]] | None = None

    @classmethod
    def create(
        cls,
        *,
        timeout: float = 3.0,
        concurrency: int = 32,
        connections: int | None = None,
        **kw: Any,
    ) -> NodeClient:
        """`connections` (default `concurrency`) bounds the calls in flight of this client
        and of those `sharing` it together."""
        connector = aiohttp.TCPConnector(
            limit=connections or concurrency, keepalive_timeout=KEEPALIVE_SECONDS
        )
        return cls(
            aiohttp.ClientSession(connector=connector),
            timeout=timeout,
            concurrency=concurrency,
            **kw,
        )

    def sharing(self, *, concurrency: int) -> NodeClient:
        """A client on this one's connections with slots of its own (`concurrency` calls):
        the policy worker's pushes never queue behind the node loops' polls, and a node
        has one kept-alive connection from the operator, not one per client (two sessions
        were about 2,000 connections to open and keep at 1,000 nodes: a tenth of the
        operator's CPU while they started, py-spy, issue 15)."""
        return NodeClient(
            self._session,
            timeout=self._timeout.total or 0.0,
            concurrency=concurrency,
            on_error=self._on_error,
            on_call=self._on_call,
            alternatives=self._alternatives,
            owner=False,
            pushes=self._pushes,
        )

    async def close(self) -> None:
        if self._owner:
            await self._session.close()

    async def _call(
        self,
        method: str,
        url: str,
        token: str,
        *,
        operation: str,
        body: WireModel | Encoded | None = None,
        answer: type[M] | None = None,
    ) -> M | None:
        try:
            return await self._send(
                method, url, token, operation=operation, body=body, answer=answer
            )
        except errors.NodeRefused as refused:
            if refused.status != UNAUTHORIZED:
                raise
            for other in self._alternatives(token):
                try:
                    return await self._send(
                        method, url, other, operation=operation, body=body, answer=answer
                    )
                except errors.NodeRefused as again:
                    if again.status != UNAUTHORIZED:
                        raise
            raise

    async def _send(
        self,
        method: str,
        url: str,
        token: str,
        *,
        operation: str,
        body: WireModel | Encoded | None,
        answer: type[M] | None,
    ) -> M | None:
        self._on_call(operation)
        headers = {"Authorization": f"Bearer {token}"}
        encoded = body if isinstance(body, Encoded) or body is None else encode(body)
        if encoded is not None:
            headers.update(encoded.headers)
        data = encoded.data if encoded is not None else None
        try:
            async with (
                self._slots,
                self._session.request(
                    method, url, data=data, headers=headers, timeout=self._timeout
                ) as resp,
            ):
                raw = await resp.read()
                if resp.status >= 400:
                    raise _refused(resp.status, raw, operation)
                if answer is None or resp.status == 204:
                    return None
                return answer.model_validate_json(raw)
        except errors.NodeRefused:
            self._on_error(operation)
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._on_error(operation)
            raise errors.NodeUnreachable(f"{operation} {url}: {exc!r}") from None
        except ValidationError as exc:
            self._on_error(operation)
            raise errors.NodeRefused(f"{operation}: malformed answer: {exc}") from None

    async def status(self, base: str, token: str, *, peers: int) -> NodeStatus:
        """The node's status listing at most `peers` of its peers (all are counted)."""
        if self._yields:
            await self._pushes.wait(self._yields)
        got = await self._call(
            "GET",
            f"{base}/admin/v1/status?{STATUS_PEERS_QUERY}={peers}",
            token,
            operation="status",
            answer=NodeStatus,
        )
        assert got is not None
        return got

    async def put_members(self, base: str, token: str, members: Members | Encoded) -> None:
        """`members` may come encoded: a fleet's list is rendered once for all its nodes."""
        await self._call(
            "PUT", f"{base}/admin/v1/members", token, operation="members", body=members
        )

    async def drain(self, base: str, token: str, *, timeout_seconds: float) -> DrainStatus:
        got = await self._call(
            "POST",
            f"{base}/admin/v1/drain",
            token,
            operation="drain",
            body=DrainRequest(timeout_seconds=timeout_seconds),
            answer=DrainStatus,
        )
        assert got is not None
        return got

    async def drain_status(self, base: str, token: str) -> DrainStatus:
        got = await self._call(
            "GET", f"{base}/admin/v1/drain", token, operation="drain-status", answer=DrainStatus
        )
        assert got is not None
        return got

    async def put_policy(self, base: str, token: str, policy: PolicyDocument) -> PolicyApplied:
        key = (policy.version, policy.hash)
        if self._policy is None or self._policy[0] != key:
            # One encoding per version for the whole fleet, shared by the concurrent pushes,
            # and in a thread: 10,000 bans are ~1.6 MB of JSON to dump and gzip.
            self._policy = (key, asyncio.ensure_future(asyncio.to_thread(encode, policy)))
        encoded = await self._policy[1]
        self._pushes.begin()
        try:
            got = await self._call(
                "PUT",
                f"{base}/admin/v1/policy",
                token,
                operation="policy",
                body=encoded,
                answer=PolicyApplied,
            )
        finally:
            self._pushes.end()
        assert got is not None
        return got

    async def local_bans(self, base: str, token: str) -> LocalBans:
        got = await self._call(
            "GET", f"{base}/admin/v1/bans/local", token, operation="local-bans", answer=LocalBans
        )
        assert got is not None
        return got


OPERATIONS: Final = ("status", "members", "drain", "drain-status", "policy", "local-bans")
"""Every admin API call above by its `operation` name (the label of the call and error
counters)."""


def _refused(status: int, raw: bytes, operation: str) -> errors.NodeRefused:
    try:
        body = ErrorBody.model_validate_json(raw)
    except ValidationError:
        return errors.NodeRefused(f"{operation}: HTTP {status}", status=status)
    return errors.NodeRefused(f"{operation}: {body.message}", status=status, code=body.code)
