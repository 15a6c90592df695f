"""Per-request deadlines: a slow handler ends as a retryable 504, exempt routes run on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from marketplace_node import http_errors
from marketplace_node.deadlines import deadline_middleware
from marketplace_protocol import errors
from marketplace_protocol.admin import ErrorBody

Client = TestClient[web.Request, web.Application]


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "10")))
    return web.Response(text="done")


async def own_timeout(request: web.Request) -> web.Response:
    raise errors.UpstreamTimeout("the peer did not answer", details={"peer": "p"})


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = web.Application(
        middlewares=[
            http_errors.error_middleware,
            deadline_middleware(0.2, per_route={"stream": None, "patient": 1.0}),
        ]
    )
    app.router.add_get("/slow", slow, name="slow")
    app.router.add_get("/stream", slow, name="stream")
    app.router.add_get("/patient", slow, name="patient")
    app.router.add_get("/own", own_timeout, name="own")
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def test_a_slow_handler_is_cut_at_its_deadline(client: Client) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await client.get("/slow")
    assert loop.time() - started < 2
    assert response.status == 504
    body = ErrorBody.model_validate_json(await response.read())
    assert body.code == "upstream_timeout"
    assert body.retryable


async def test_fast_handlers_and_per_route_deadlines(client: Client) -> None:
    assert (await client.get("/slow", params={"s": "0"})).status == 200
    assert (await client.get("/patient", params={"s": "0.4"})).status == 200
    assert (await client.get("/stream", params={"s": "0.4"})).status == 200  # exempt


async def test_a_handlers_own_timeout_error_passes_unchanged(client: Client) -> None:
    response = await client.get("/own")
    assert response.status == 504
    assert ErrorBody.model_validate_json(await response.read()).details == {"peer": "p"}


def test_the_default_must_be_positive() -> None:
    with pytest.raises(ValueError):
        deadline_middleware(0)
