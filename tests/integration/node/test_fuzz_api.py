"""Fuzz a real node process through its listeners' own `/openapi.json` with schemathesis:
no 5xx, no crash, every error a typed `ErrorBody` with a stable code.

Schemathesis generates requests for every operation from the documents the node
serves (public listener: the client API and the peer protocol; private listener:
the admin API and the probes): valid ones and, in its negative mode, ones that
break the schema (bodies, path and query parameters). One requests auth hook
(`NodeAuth`) adds the admin bearer token to admin routes and signs peer routes
(RFC 9421, a fresh identity) over the exact bytes sent, so their bodies are
reached past authentication.
`derandomize` and a fixed example count keep the run reproducible and
bounded for CI.

Not fuzzed here: `GET /api/v1/subscribe` (a stream that stays open by
design) and `POST /admin/v1/drain` (a one-way switch to 503 `draining`,
checked once at the very end instead).
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from marketplace_node import signing
from marketplace_protocol import errors, identity
from marketplace_protocol.admin import ErrorBody, Operation
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from tests.support.net import free_port
from tests.support.node_processes import Node, http

TOKEN = "fuzz-admin-token-0123456789abcdef"
HOST = "127.0.0.90"  # away from NodeCluster's 127.0.0.40+ so parallel runs do not collide
EXAMPLES = 25  # per operation and mode: ~1,000 requests in all
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
SKIPPED = {("/api/v1/subscribe", "GET"), ("/admin/v1/drain", "POST")}
PEER = identity.Identity.generate()
ApiOperation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Any]


def _subclasses(cls: type[errors.NodeError]) -> Iterator[type[errors.NodeError]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


# the stable codes: every NodeError's, plus aiohttp's own 405 and 415 (`http_errors._CODES`)
CODES = {cls.code for cls in _subclasses(errors.NodeError)} | {
    "method_not_allowed",
    "unsupported_media_type",
}


class NodeAuth(requests.auth.AuthBase):
    """The bearer token on admin routes; an RFC 9421 signature over the final bytes on peer
    routes (path and query exactly as sent, as the node verifies them)."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urllib.parse.urlsplit(r.url or "")
        if url.path.startswith("/admin/"):
            r.headers["Authorization"] = f"Bearer {TOKEN}"
        elif url.path.startswith("/p2p/"):
            raw = r.body or b""
            body = raw.encode() if isinstance(raw, str) else raw
            assert isinstance(body, bytes)  # JSON or raw bytes: never a stream here
            r.headers.update(
                signing.sign_request(
                    PEER,
                    method=r.method or "GET",
                    path=url.path,
                    query=url.query,
                    body=body,
                    created=int(time.time()),
                )
            )
        return r


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """One real node on loopback with an admin token and a policy that never limits or bans."""
    root = tmp_path_factory.mktemp("fuzz")
    started = Node(0, HOST, free_port(HOST), root / "data", root / "node.log", [])
    started.env = {"MARKETPLACE_NODE_ADMIN_TOKEN": TOKEN, "MARKETPLACE_NODE_LOG_LEVEL": "ERROR"}
    started.start()
    try:
        started.wait_listening()
        permit(started, 1)
        yield started
    finally:
        started.kill()


def permit(node: Node, version: int) -> None:
    """Apply a policy that never limits or bans, so every example reaches its handler."""
    huge = {"rate": 1_000_000, "burst": 1_000_000}
    policy = {
        "version": version,
        "rateLimits": {
            "perPeer": {op.value: huge for op in Operation},
            "global": huge,
            "maxPendingQueries": 100_000,
            "escalation": {"threshold": 1_000_000, "windowSeconds": 0.001},
        },
    }
    status, body = admin(node, "PUT", "/admin/v1/policy", json.dumps(policy).encode())
    assert status == 200, body


def admin(node: Node, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    return http(method, node.private_url + path, body, headers)


@pytest.fixture(scope="module")
def operations(node: Node) -> list[ApiOperation]:
    results = []
    for base in (node.url, node.private_url):  # each listener serves its own document
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        schema.config.update(base_url=base)
        results += list(schema.get_all_operations())
    every = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(every) == len(results), "the document has operations schemathesis cannot read"
    return [op for op in every if (op.path, op.method.upper()) not in SKIPPED]


FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.timeout(300)
def test_no_request_from_the_openapi_document_gets_a_5xx(
    node: Node, operations: list[ApiOperation]
) -> None:
    seen: Counter[tuple[str, str, int]] = Counter()
    with requests.Session() as session:
        session.auth = NodeAuth()  # the auth hook: bearer token or signature, per route

        for operation, mode in itertools.product(operations, MODES):

            @FUZZ
            @given(operation.as_strategy(generation_mode=mode))
            def one(case: Case) -> None:
                response = case.call(session=session, timeout=30)
                seen[case.method, case.path, response.status_code // 100] += 1
                check(case, response.status_code, response.content)
                if case.path == "/admin/v1/policy" and response.status_code == 200:
                    permit(node, response.json()["version"] + 1)  # keep the door open

            try:
                one()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to break: no parameters or body
    assert http("GET", f"{node.private_url}/healthz")[0] == 200, "the node died under the fuzz"
    assert {(method.upper(), route) for method, route, _ in seen} == {
        (op.method.upper(), op.path) for op in operations
    }
    passed_auth = {route for _, route, cls in seen if cls == 2}
    assert {"/admin/v1/policy", "/admin/v1/status", "/admin/v1/members"} <= passed_auth
    assert {"/p2p/v1/changes", "/api/v1/search"} <= passed_auth  # signed: the hook works
    refused = {route for _, route, cls in seen if cls == 4}
    assert {"/api/v1/search", "/p2p/v1/announce", "/admin/v1/policy"} <= refused


def check(case: Case, status: int, content: bytes) -> None:
    if case.path == "/readyz" and status == 503:
        return  # by design once members (pushed by the fuzz) are unreachable
    assert status < 500, f"{status} for {case!r}: {content[:300]!r}"
    if status >= 400:
        error = ErrorBody.model_validate_json(content)
        assert error.code in CODES, f"unstable code {error.code!r} for {case!r}"


def test_drain_refuses_client_work_with_a_typed_retryable_503(node: Node) -> None:
    """Last (it is one-way): the one 5xx the node gives on purpose, in the same ErrorBody."""
    status, _ = admin(node, "POST", "/admin/v1/drain", b"{}")
    assert status == 202
    status, body = http("GET", f"{node.url}/api/v1/search?q=x")
    error = ErrorBody.model_validate_json(body)
    assert (status, error.code, error.retryable) == (503, "draining", True)
