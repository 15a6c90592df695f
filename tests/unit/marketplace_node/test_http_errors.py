"""The error middleware: stable codes, Retry-After rounded up, nothing leaked from a crash."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Coroutine

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from aiohttp.typedefs import Handler
from marketplace_node import http_errors
from marketplace_node.policy.enforcer import PolicyEnforcer
from marketplace_protocol import errors, logs
from marketplace_protocol.admin import ErrorBody, Escalation, PolicyDocument, RateLimits
from marketplace_protocol.clock import FakeClock

Client = TestClient[web.Request, web.Application]
LEAK = "password=hunter2 at /etc/marketplace/identity/ed25519.pem"


def raising(exc: BaseException) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        raise exc

    return handler


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = web.Application(middlewares=[http_errors.error_middleware])
    app.router.add_get("/limited", raising(errors.RateLimited("slow down", retry_after=2.01)))
    app.router.add_get("/pending", raising(errors.TooManyPending("busy", retry_after=0.0)))
    app.router.add_get("/banned", raising(errors.PeerBanned("banned", details={"reason": "spam"})))
    app.router.add_get("/draining", raising(errors.Draining("draining")))
    app.router.add_get("/crash", raising(RuntimeError(LEAK)))
    app.router.add_post("/big", _read_body)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def _read_body(request: web.Request) -> web.Response:
    await request.read()
    return web.Response()


async def body(response: object) -> ErrorBody:
    return ErrorBody.model_validate_json(await response.read())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("path", "status", "code", "retryable", "retry_after"),
    [
        ("/limited", 429, "rate_limited", True, "3"),
        ("/pending", 429, "too_many_pending", True, "1"),
        ("/banned", 403, "peer_banned", False, None),
        ("/draining", 503, "draining", True, None),
        ("/missing", 404, "not_found", False, None),
    ],
)
async def test_errors_map_to_codes(
    client: Client, path: str, status: int, code: str, retryable: bool, retry_after: str | None
) -> None:
    response = await client.get(path)
    assert response.status == status
    error = await body(response)
    assert (error.code, error.retryable) == (code, retryable)
    assert response.headers.get("Retry-After") == retry_after


async def test_details_are_carried(client: Client) -> None:
    assert (await body(await client.get("/banned"))).details == {"reason": "spam"}


async def test_a_crash_is_500_internal_without_details(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await client.get("/crash")
    assert response.status == 500
    text = (await response.read()).decode()
    assert "hunter2" not in text
    assert "ed25519" not in text
    assert (await body(response)).code == "internal"
    assert "unhandled error in GET /crash" in caplog.text  # the cause is logged, not answered


async def test_aiohttp_body_limit_answers_json_413(client: Client) -> None:
    response = await client.post("/big", data=io.BytesIO(b"x" * (1024**2 + 10)))
    assert response.status == 413
    assert (await body(response)).code == "payload_too_large"


@pytest.mark.parametrize(("seconds", "header"), [(0.0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2")])
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: str) -> None:
    assert http_errors.retry_after_header(seconds) == header


async def test_request_context_reaches_log_lines_and_the_id_is_echoed() -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(logs.JsonFormatter().format(record))

    async def handler(request: web.Request) -> web.Response:
        logging.getLogger("test.context").warning("handling")
        return web.Response(text="ok")

    app = web.Application(middlewares=[http_errors.error_middleware])
    app.router.add_get("/work", handler)
    collector = Collect()
    logging.getLogger("test.context").addHandler(collector)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            given = await client.get("/work", headers={"X-Request-Id": "trace-42"})
            fresh = await client.get("/work", headers={"X-Request-Id": "bad id; with spaces"})
    finally:
        logging.getLogger("test.context").removeHandler(collector)
    assert given.headers["X-Request-Id"] == "trace-42"
    assert len(fresh.headers["X-Request-Id"]) == 16
    first, second = (json.loads(line) for line in lines)
    assert (first["request_id"], first["method"], first["path"]) == ("trace-42", "GET", "/work")
    assert second["request_id"] == fresh.headers["X-Request-Id"]


async def test_tarpit_delays_banned_answers_up_to_a_cap() -> None:
    tarpit = http_errors.tarpit_middleware(lambda: 0.3, max_held=2)
    app = web.Application(middlewares=[http_errors.error_middleware, tarpit])
    app.router.add_get("/banned", raising(errors.PeerBanned("banned")))
    app.router.add_get("/limited", raising(errors.RateLimited("slow", retry_after=1)))
    loop = asyncio.get_running_loop()
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        started = loop.time()
        answers = await asyncio.gather(*(client.get("/banned") for _ in range(4)))
        took = loop.time() - started
        assert [a.status for a in answers] == [403] * 4
        assert 0.25 <= took < 2.0
        quick = loop.time()
        assert (await client.get("/limited")).status == 429  # limits are not tarpitted
        assert loop.time() - quick < 0.25


async def test_tarpit_answers_at_once_beyond_its_cap() -> None:
    tarpit = http_errors.tarpit_middleware(lambda: 5.0, max_held=0)
    app = web.Application(middlewares=[http_errors.error_middleware, tarpit])
    app.router.add_get("/banned", raising(errors.PeerBanned("banned")))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client, asyncio.timeout(2):
        assert (await client.get("/banned")).status == 403


def _tarpit_policy(version: int, seconds: float) -> PolicyDocument:
    escalation = Escalation(tarpit_seconds=seconds)
    return PolicyDocument(version=version, rate_limits=RateLimits(escalation=escalation))


async def test_tarpit_delay_follows_the_applied_policy() -> None:
    enforcer = PolicyEnforcer(FakeClock(), node_id="node-self-000000")
    assert enforcer.tarpit_seconds == 1.0  # the built-in default, before any policy
    tarpit = http_errors.tarpit_middleware(lambda: enforcer.tarpit_seconds)
    app = web.Application(middlewares=[http_errors.error_middleware, tarpit])
    app.router.add_get("/banned", raising(errors.PeerBanned("banned")))
    loop = asyncio.get_running_loop()

    async def answer_time(peer: Client) -> float:
        started = loop.time()
        assert (await peer.get("/banned")).status == 403
        return loop.time() - started

    async with TestClient(TestServer(app, host="127.0.0.1")) as peer, asyncio.timeout(5):
        enforcer.apply(_tarpit_policy(1, 0.4))
        assert await answer_time(peer) >= 0.35
        enforcer.apply(_tarpit_policy(2, 0.0))  # same app, no restart
        assert await answer_time(peer) < 0.2
        enforcer.apply(_tarpit_policy(3, 0.4))
        assert await answer_time(peer) >= 0.35


async def test_a_zero_delay_answers_without_yielding_to_the_loop() -> None:
    request = make_mocked_request("GET", "/banned")
    handler = raising(errors.PeerBanned("banned"))
    held = http_errors.tarpit_middleware(lambda: 0.01)(request, handler)
    assert isinstance(held, Coroutine)
    held.send(None)  # a real delay suspends at the sleep
    held.close()
    immediate = http_errors.tarpit_middleware(lambda: 0.0)(request, handler)
    assert isinstance(immediate, Coroutine)
    with pytest.raises(errors.PeerBanned):
        immediate.send(None)  # one step to the answer: no sleep, not even sleep(0)


def test_tarpit_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        http_errors.tarpit_middleware(lambda: 1.0, max_held=-1)


def test_fresh_request_ids_are_distinct_and_well_formed() -> None:
    from aiohttp.test_utils import make_mocked_request  # noqa: PLC0415

    ids = {http_errors.request_id(make_mocked_request("GET", "/")) for _ in range(1_000)}
    assert len(ids) == 1_000
    assert all(re.fullmatch(r"[0-9a-f]{16}", rid) for rid in ids)
