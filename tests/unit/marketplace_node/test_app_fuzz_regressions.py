"""Regressions found by the API fuzz (`tests/integration/node/test_fuzz_api.py`), in process."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from marketplace_node import signing
from marketplace_node.config import NodeSettings
from marketplace_protocol import identity
from marketplace_protocol.admin import ErrorBody

from tests.support.node_server import serving


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TestServer]:
    async with serving(NodeSettings(data_dir=tmp_path, port=0)) as (started, _, _):
        yield started


@pytest.mark.parametrize("body", [b"", b"not the content"])
async def test_an_upload_that_does_not_match_its_digest_is_the_clients_400(
    server: TestServer, body: bytes
) -> None:
    """Was a 502 `integrity_error` (retryable, blaming an upstream) for the client's own bytes."""
    digest = hashlib.sha256(b"the content").hexdigest()
    async with aiohttp.ClientSession() as http:
        async with http.put(server.make_url(f"/api/v1/blobs/{digest}"), data=body) as resp:
            error = ErrorBody.model_validate_json(await resp.read())
            assert (resp.status, error.code, error.retryable) == (400, "invalid_input", False)
        async with http.put(server.make_url(f"/api/v1/blobs/{digest}"), data=b"the content") as ok:
            assert ok.status == 201


async def test_a_change_sequence_beyond_sqlites_integers_is_a_400(server: TestServer) -> None:
    """Was a 500: `after=2**63` (schemathesis, negative mode) overflowed the SQLite query."""
    peer = identity.Identity.generate()
    query = f"after={2**63}"
    headers = signing.sign_request(
        peer, method="GET", path="/p2p/v1/changes", query=query, created=int(time.time())
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url(f"/p2p/v1/changes?{query}"), headers=headers) as resp:
            error = ErrorBody.model_validate_json(await resp.read())
            assert (resp.status, error.code) == (400, "invalid_input")
        cursor = server.make_url(f"/api/v1/subscribe?cursor={2**64 - 1}")
        async with http.get(cursor) as resp:
            error = ErrorBody.model_validate_json(await resp.read())
            assert (resp.status, error.code) == (400, "invalid_input")


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/api/v1/search?q=" + "x" * 9_000, {}, 414, "request_line_too_long"),
        ("/api/v1/search?q=" + "x" * 60_000, {}, 414, "request_line_too_long"),
        ("/api/v1/search?q=x", {"X-Long": "y" * 9_000}, 431, "header_too_large"),
    ],
)
async def test_an_over_long_request_gets_our_typed_answer_not_the_parsers(
    server: TestServer, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    """Was aiohttp's plain-text 400 `Got more than 8190 bytes`, before any middleware."""
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url(path), headers=headers) as resp:
            error = ErrorBody.model_validate_json(await resp.read())
            assert (resp.status, error.code, error.retryable) == (status, code, False)
        # just inside our limits: the request reaches the router (a long unknown path)
        async with http.get(server.make_url("/" + "x" * 8_000)) as inside:
            error = ErrorBody.model_validate_json(await inside.read())
            assert (inside.status, error.code) == (404, "not_found")
