"""The admin API under `/admin/v1/`: parse, call the backend, serialise; nothing else.

Mounted as an aiohttp sub-application (`add_admin_routes`), so its bearer
authentication and error middleware apply to admin paths only. The node
core supplies the `AdminBackend`; `admin.backend.NodeAdmin` is a ready one
built from the policy enforcer and the drain coordinator.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

from aiohttp import web
from marketplace_protocol.admin import (
    STATUS_PEERS_QUERY,
    DrainRequest,
    DrainStatus,
    LocalBans,
    Members,
    NodeStatus,
    PolicyApplied,
    PolicyDocument,
)
from marketplace_protocol.errors import InvalidInput
from pydantic import BaseModel, SecretStr

from marketplace_node import http_errors
from marketplace_node.admin import auth, body

PREFIX: Final = "/admin/v1"
POLICY_BODY_MAX: Final = 32 * 1024 * 1024
"""50,000 bans (the model's cap) at ~300 bytes each, with room; gzip bodies inflate to this."""
POLICY_INLINE_MAX: Final = 16 * 1024  # bytes of policy validated on the event loop
MEMBERS_BODY_MAX: Final = 8 * 1024 * 1024
"""10,000 members (the model's cap) of at most ~700 bytes each."""
SMALL_BODY_MAX: Final = 16 * 1024


class AdminBackend(Protocol):
    """What the admin API needs from the node."""

    async def status(self) -> NodeStatus: ...
    async def apply_policy(self, doc: PolicyDocument) -> PolicyApplied: ...
    async def local_bans(self) -> LocalBans: ...
    async def set_members(self, members: Members) -> None: ...
    async def drain(self, request: DrainRequest) -> DrainStatus: ...
    async def drain_status(self) -> DrainStatus: ...


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        status=status, text=model.model_dump_json(by_alias=True), content_type=http_errors.JSON
    )


def admin_app(backend: AdminBackend, token: SecretStr | auth.Accepted | None) -> web.Application:
    """The admin API as a sub-application; mount it at `PREFIX`. `token`: one fixed token
    or what accepts tokens now (`auth.TokenFile.accepted`)."""
    accepted = token if callable(token) else auth.fixed(token)
    routes = web.RouteTableDef()

    @routes.put("/policy")
    async def put_policy(request: web.Request) -> web.Response:
        raw = await body.read_body(request, POLICY_BODY_MAX)
        # Validating 50,000 bans takes most of a second: not on the event loop; a small
        # document (most changes: a ban or two) at once, cheaper than the thread hop.
        if len(raw) <= POLICY_INLINE_MAX:
            doc = body.parse(PolicyDocument, raw)
        else:
            doc = await asyncio.to_thread(body.parse, PolicyDocument, raw)
        return _json(await backend.apply_policy(doc))

    @routes.get("/status")
    async def get_status(request: web.Request) -> web.Response:
        status = await backend.status()
        raw = request.rel_url.query.get(STATUS_PEERS_QUERY)
        if raw is None:
            return _json(status)
        if not raw.isdigit() or len(raw) > 6:
            raise InvalidInput(f"{STATUS_PEERS_QUERY} must be a count of peers to list")
        return _json(status.listing(int(raw)))

    @routes.get("/bans/local")
    async def get_local_bans(request: web.Request) -> web.Response:
        return _json(await backend.local_bans())

    @routes.put("/members")
    async def put_members(request: web.Request) -> web.Response:
        members = body.parse(Members, await body.read_body(request, MEMBERS_BODY_MAX))
        await backend.set_members(members)
        return web.Response(status=204)

    @routes.post("/drain")
    async def post_drain(request: web.Request) -> web.Response:
        raw = await body.read_body(request, SMALL_BODY_MAX)
        drain = body.parse(DrainRequest, raw) if raw.strip() else DrainRequest()
        return _json(await backend.drain(drain), status=202)

    @routes.get("/drain")
    async def get_drain(request: web.Request) -> web.Response:
        return _json(await backend.drain_status())

    app = web.Application(middlewares=[http_errors.error_middleware, auth.bearer_auth(accepted)])
    app.add_routes(routes)
    return app


def add_admin_routes(
    app: web.Application, backend: AdminBackend, token: SecretStr | auth.Accepted | None
) -> None:
    """Mount the admin API on the node's application at `/admin/v1/`."""
    app.add_subapp(PREFIX, admin_app(backend, token))
