"""Over HTTP: a flooding peer is limited, then banned, while an honest peer is served throughout."""

from __future__ import annotations

from collections import Counter

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler
from marketplace_node import http_errors
from marketplace_node.policy.enforcer import PolicyEnforcer
from marketplace_protocol.admin import ErrorBody, Operation, PolicyDocument
from marketplace_protocol.clock import FakeClock

ABUSER = "peer-abuser000000"
HONEST = "peer-honest000000"


def guarded_app(door: PolicyEnforcer) -> web.Application:
    @web.middleware
    async def policy_door(request: web.Request, handler: Handler) -> web.StreamResponse:
        door.admit(request.headers.get("X-Peer"), request.remote or "", Operation.SEARCH)
        async with door.pending():
            return await handler(request)

    async def search(request: web.Request) -> web.Response:
        return web.json_response({"results": []})

    app = web.Application(middlewares=[http_errors.error_middleware, policy_door])
    app.router.add_get("/search", search)
    return app


async def test_flooder_is_limited_then_banned_and_the_honest_peer_is_served() -> None:
    clock = FakeClock()
    door = PolicyEnforcer(clock, node_id="node-self-000000")
    door.apply(PolicyDocument.model_validate({"version": 1}))  # defaults: search 50/s burst 100
    outcomes: Counter[str] = Counter()
    retry_after: set[str] = set()
    async with TestClient(TestServer(guarded_app(door), host="127.0.0.1")) as client:
        for i in range(300):
            response = await client.get("/search", headers={"X-Peer": ABUSER})
            body = await response.read()
            outcomes[
                "ok" if response.status == 200 else ErrorBody.model_validate_json(body).code
            ] += 1
            if response.status == 429:
                retry_after.add(response.headers["Retry-After"])
            if i % 10 == 0:
                honest = await client.get("/search", headers={"X-Peer": HONEST})
                assert honest.status == 200
            clock.advance(0.001)  # 1,000 requests per second against a limit of 50
    assert outcomes["ok"] >= 100  # the burst, then the sustained rate
    # the escalation threshold (20), plus what the bucket leaked meanwhile (20 per 60 s)
    assert 20 <= outcomes["rate_limited"] <= 22
    assert outcomes["peer_banned"] == 300 - outcomes["ok"] - outcomes["rate_limited"]
    assert outcomes["peer_banned"] > 150
    assert retry_after == {"1"}
    (ban,) = door.local_bans().bans
    assert (ban.peer_id, ban.reason) == (ABUSER, "rate_limited")
