"""The API adapter against a loopback HTTP server: answers, typed errors, a dropped connection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes.aio import client
from marketplace_operator import errors, k8s


@pytest.fixture
async def server() -> AsyncIterator[tuple[TestServer, list[str]]]:
    seen: list[str] = []

    async def pod(request: web.Request) -> web.StreamResponse:
        seen.append(request.match_info["name"])
        name = request.match_info["name"]
        if name == "dropped" and seen.count("dropped") == 1:
            assert request.transport is not None
            request.transport.close()  # as a server closing a kept-alive connection
            return web.Response()
        if name == "busy":
            return web.json_response({"message": "etcdserver: request timed out"}, status=500)
        if name.startswith("slow"):
            await asyncio.sleep(0.3)
        if name == "missing":
            return web.json_response({"message": 'pods "missing" not found'}, status=404)
        return web.json_response({"metadata": {"name": name}})

    app = web.Application()
    app.router.add_route("*", "/api/v1/namespaces/{ns}/pods/{name}", pod)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server, seen
    await test_server.close()


async def test_answers_errors_and_one_resend_after_a_dropped_connection(
    server: tuple[TestServer, list[str]],
) -> None:
    test_server, seen = server
    configuration = client.Configuration(host=str(test_server.make_url("")).rstrip("/"))
    kube = k8s.Kube(client.ApiClient(configuration), timeout=5.0)
    try:
        assert await kube.get(k8s.PODS, "ns", "a") == {"metadata": {"name": "a"}}
        assert await kube.get(k8s.PODS, "ns", "missing") is None
        # aiohttp itself resends only idempotent methods (a GET) on a dropped connection.
        patched = await kube.patch(
            k8s.PODS, "ns", "dropped", {"metadata": {"labels": {}}}, answer=True
        )
        assert patched == {"metadata": {"name": "dropped"}}
        assert seen == ["a", "missing", "dropped", "dropped"]
        # The operator's patches do not read the patched object: not decoded.
        assert await kube.patch(k8s.PODS, "ns", "a", {"metadata": {"labels": {}}}) == {}
        with pytest.raises(errors.NotFound):  # an error answer is still read and typed
            await kube.patch(k8s.PODS, "ns", "missing", {"metadata": {"labels": {}}})
        with pytest.raises(errors.NotFound):
            await kube.request("GET", k8s.PODS.path("ns", "missing"))
    finally:
        await kube.close()


async def test_calls_the_api_server_did_not_answer_are_counted_by_verb(
    server: tuple[TestServer, list[str]],
) -> None:
    test_server, _ = server
    unanswered: list[str] = []
    configuration = client.Configuration(host=str(test_server.make_url("")).rstrip("/"))
    kube = k8s.Kube(client.ApiClient(configuration), timeout=5.0, on_unavailable=unanswered.append)
    try:
        assert await kube.get(k8s.PODS, "ns", "missing") is None  # an answer: not counted
        with pytest.raises(errors.Unavailable):
            await kube.get(k8s.PODS, "ns", "busy")
        assert unanswered == ["GET"]
        await test_server.close()  # nobody listens any more
        with pytest.raises(errors.Unavailable):
            await kube.patch(k8s.PODS, "ns", "a", {"metadata": {"labels": {}}})
        assert unanswered == ["GET", "PATCH"]
    finally:
        await kube.close()


async def test_waiting_for_a_connection_does_not_count_against_the_timeout(
    server: tuple[TestServer, list[str]],
) -> None:
    """Issue 15: 300 nodes starting queued a thousand calls behind the pool, and aiohttp's
    timeout counted the queueing: calls the API server answered in time still failed."""
    test_server, seen = server
    configuration = client.Configuration(host=str(test_server.make_url("")).rstrip("/"))
    configuration.connection_pool_maxsize = 1
    kube = k8s.Kube(client.ApiClient(configuration), timeout=0.6, connections=1)
    try:
        # Each answer takes 0.3 s; one at a time, the fourth waits 0.9 s before it is sent.
        got = await asyncio.gather(*(kube.get(k8s.PODS, "ns", f"slow-{i}") for i in range(4)))
        assert [g["metadata"]["name"] for g in got if g] == [f"slow-{i}" for i in range(4)]
        assert sorted(seen) == [f"slow-{i}" for i in range(4)]
    finally:
        await kube.close()


async def test_calls_do_not_read_the_environment_s_netrc(
    server: tuple[TestServer, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kubernetes.aio trusts the environment by default: aiohttp then reads ~/.netrc in a
    thread for each call (7 % of the operator's CPU at 300 nodes)."""
    test_server, seen = server
    read: list[str] = []
    monkeypatch.setattr(aiohttp.client, "netrc_from_env", lambda: read.append("netrc"))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": str(test_server.make_url(""))}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    kube = await k8s.Kube.from_environment(kubeconfig=str(kubeconfig))
    try:
        assert await kube.get(k8s.PODS, "ns", "p") == {"metadata": {"name": "p"}}
    finally:
        await kube.close()
    assert seen == ["p"]
    assert read == []
