"""The API server readiness heartbeat: what one answer changes, and the loop against a
loopback server whose `/readyz` fails for a while, as the API server's does while its
etcd is away."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes.aio import client
from marketplace_operator import apihealth, k8s
from marketplace_operator.apihealth import ApiView


def test_each_change_is_reported_once_with_how_long_it_lasted() -> None:
    view, change = apihealth.observe(ApiView(since=0.0), True, 5.0)
    assert (view, change) == (ApiView(since=0.0), None)  # still ready: nothing to say
    view, change = apihealth.observe(view, False, 10.0)
    assert view == ApiView(False, 10.0)
    assert change is not None
    assert "not ready" in change
    assert apihealth.observe(view, False, 15.0) == (view, None)
    view, change = apihealth.observe(view, True, 22.0)
    assert view == ApiView(True, 22.0)
    assert change is not None
    assert "after 12 s" in change


async def test_the_heartbeat_sees_a_storage_outage_the_operator_made_no_call_during() -> None:
    """503 from /readyz (etcd away) reads not ready and counts as unanswered; 200 ready."""
    answers = iter([200, 503, 503, 200])

    async def readyz(_: web.Request) -> web.Response:
        status = next(answers, 200)
        return web.Response(text="ok" if status == 200 else "[-]etcd failed", status=status)

    app = web.Application()
    app.router.add_get("/readyz", readyz)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    unanswered: list[str] = []
    configuration = client.Configuration(host=str(server.make_url("")).rstrip("/"))
    kube = k8s.Kube(client.ApiClient(configuration), timeout=5.0, on_unavailable=unanswered.append)
    seen: list[bool] = []
    four = asyncio.Event()

    def report(ready: bool) -> None:
        seen.append(ready)
        if len(seen) >= 4:
            four.set()

    task = asyncio.create_task(apihealth.watch(kube.ready, report, interval=0.01))
    try:
        async with asyncio.timeout(10):
            await four.wait()
        assert seen[:4] == [True, False, False, True]
        assert unanswered[:2] == ["GET", "GET"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await kube.close()
        await server.close()
