"""Assembles the node's two aiohttp applications and the service lifecycle.

The public one (peer protocol, client API, its OpenAPI document) is what peers and
clients reach; the private one (admin API, /metrics, probes, its own OpenAPI
document) is for the operator, Prometheus and the kubelet only, so a
NetworkPolicy can tell them apart by port (docs/node.md, "HTTP surfaces").
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware
from marketplace_protocol.admin import Members, PolicyDocument
from prometheus_client.aiohttp import make_aiohttp_handler

from marketplace_node import (
    deadlines,
    forwarded,
    handoff,
    http_api,
    http_errors,
    limits,
    openapi,
    replication,
    sync,
)
from marketplace_node.admin import auth, routes
from marketplace_node.admin.backend import NodeAdmin
from marketplace_node.config import NodeSettings
from marketplace_node.membership import Membership
from marketplace_node.metrics import Snapshot, SnapshotCollector, StateCollector
from marketplace_node.policy import watch
from marketplace_node.policy.watch import PolicyDirWatcher
from marketplace_node.service import NodeService

logger = logging.getLogger(__name__)
SESSION = web.AppKey("session", aiohttp.ClientSession)
REQUEST_DEADLINE_SECONDS = 30.0  # any request not listed in `_deadlines`


def _snapshot(service: NodeService) -> Snapshot:
    return Snapshot(
        peers=len(service.peers),
        packages=len(service.catalogue),
        store_bytes=service.store.size_bytes(),
        in_flight=service.in_flight,
        pending_queries=service.enforcer.status.pending,
        drain_state=service.drain.state,
        bans=service.enforcer.active_bans_by_reason(),
    )


def _state(service: NodeService) -> dict[str, float]:
    return {
        "subscribers": float(len(service.hub)),
        "ready": float(service.ready()),
        "change_seq": float(service.last_seq),
        "storage_full": float(service.volume.full()),
        "storage_free_bytes": float(usage.free if (usage := service.volume.usage()) else -1),
        "clock_offset_seconds": service.peer_clocks.offset(),
    }


class Apps(NamedTuple):
    """The application of each listener; the service's lifecycle runs with `public`."""

    public: web.Application
    private: web.Application


def build_apps(service: NodeService) -> Apps:
    membership = Membership(service)
    service.drain.add_handoff("leave", lambda: handoff.leave(service))
    return Apps(public=_public_app(service, membership), private=_private_app(service, membership))


def _public_app(service: NodeService, membership: Membership) -> web.Application:
    app = web.Application(
        middlewares=[
            http_errors.error_middleware,
            # the client's address behind trusted proxies, before anything keyed by it
            forwarded.forwarded_middleware(service.settings.trusted_proxies),
            # banned peers wait for their answer, as long as the applied policy says
            http_errors.tarpit_middleware(lambda: service.enforcer.tarpit_seconds),
            _deadlines(service.settings),
            http_api.door,
        ],
        client_max_size=limits.CLIENT_JSON_MAX,
    )
    app[http_api.SERVICE] = service
    app[http_api.MEMBERSHIP] = membership
    http_api.add_routes(app)
    _add_openapi(app, openapi.public_document())
    app.cleanup_ctx.append(lambda a: _lifecycle(a, service, membership))
    return app


def _private_app(service: NodeService, membership: Membership) -> web.Application:
    app = web.Application(
        middlewares=[
            http_errors.error_middleware,
            deadlines.deadline_middleware(REQUEST_DEADLINE_SECONDS),
        ],
        client_max_size=limits.CLIENT_JSON_MAX,
    )
    app[http_api.SERVICE] = service
    http_api.add_probes(app)
    service.metrics.registry.register(SnapshotCollector(lambda: _snapshot(service)))
    service.metrics.registry.register(StateCollector(lambda: _state(service)))
    app.router.add_get("/metrics", make_aiohttp_handler(service.metrics.registry), name="metrics")
    _add_openapi(app, openapi.private_document())
    _add_admin(app, service, membership)
    return app


def _add_openapi(app: web.Application, document: dict[str, object]) -> None:
    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get("/openapi.json", openapi_json, name="openapi")


def _deadlines(settings: NodeSettings) -> Middleware:
    """Every request ends within its deadline (review MAJOR-6); streams are bounded by their
    own transfer timeouts instead, and calls that fetch from a peer get the fetch timeout."""
    fetching = settings.fetch_timeout_seconds + settings.peer_timeout_seconds
    return deadlines.deadline_middleware(
        REQUEST_DEADLINE_SECONDS,
        per_route={
            "subscribe": None,
            "get_content": None,
            "p2p_content": None,
            "put_blob": None,
            "p2p_replicate": fetching,
        },
    )


def _members_setter(
    service: NodeService, membership: Membership
) -> Callable[[Members], Awaitable[None]]:
    """New members are greeted at once: joining them is what makes a starting node ready."""

    async def set_members(members: Members) -> None:
        await service.set_members(members)
        membership.nudge()

    return set_members


def _add_admin(app: web.Application, service: NodeService, membership: Membership) -> None:
    backend = NodeAdmin(
        enforcer=service.enforcer,
        drain=service.drain,
        status=service.status,
        set_members=_members_setter(service, membership),
    )
    routes.add_admin_routes(app, backend, admin_token(service.settings))


def admin_token(settings: NodeSettings) -> auth.Accepted:
    """The admin bearer tokens: the file (followed as it changes) wins over the setting;
    none refuses all admin calls."""
    if settings.admin_token_file is not None:
        source = auth.TokenFile(
            settings.admin_token_file, overlap=settings.admin_token_overlap_seconds
        )
        if not source.accepted():
            logger.warning("admin token file unreadable or empty; admin calls are refused")
        return source.accepted
    return auth.fixed(settings.admin_token)


async def _lifecycle(
    app: web.Application, service: NodeService, membership: Membership
) -> AsyncIterator[None]:
    settings = service.settings
    connector = aiohttp.TCPConnector(
        limit=settings.client_connection_limit,
        limit_per_host=8,
        ssl=service.tls.client if service.tls is not None else True,
        local_addr=None if settings.source_host is None else (settings.source_host, 0),
    )
    session = aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=settings.peer_timeout_seconds)
    )
    app[SESSION] = session
    loops = [
        membership.run,
        lambda: sync.run(service),
        service.republish_loop,
        lambda: replication.run(service),
    ]
    mounted: list[watch.Poller] = []
    if settings.policy_dir is not None:
        mounted.append(_policy_watcher(service, membership, settings.policy_dir))
    if service.tls is not None:
        mounted.append(service.tls)
    if mounted:
        loops.append(lambda: watch.poll_forever(mounted))
    try:
        await service.start(session, loops)
        yield
    finally:
        await service.stop()
        await session.close()


def _policy_watcher(
    service: NodeService, membership: Membership, directory: Path
) -> PolicyDirWatcher:
    async def on_policy(doc: PolicyDocument) -> None:
        await service.enforcer.apply_async(doc)  # compiled off the event loop

    on_members = _members_setter(service, membership)
    return PolicyDirWatcher(directory, on_policy=on_policy, on_members=on_members)
