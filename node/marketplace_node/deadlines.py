"""Per-request deadlines for inbound handlers (review MAJOR-6).

Outgoing calls already carry timeouts; this bounds the whole handler, so a
request that waits on a slow store or a chain of peers ends with a
retryable 504 `upstream_timeout` instead of holding a connection, a pending
slot and an in-flight count forever. Long-lived routes (subscriptions,
content streams) opt out by name with `None`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import MappingProxyType

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from marketplace_protocol import errors


def deadline_middleware(
    default_seconds: float, *, per_route: Mapping[str, float | None] = MappingProxyType({})
) -> Middleware:
    """A middleware giving each request `per_route[route name]` (or the default) seconds."""
    if default_seconds <= 0:
        raise ValueError("the default deadline must be positive")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        name = request.match_info.route.name
        seconds = per_route.get(name, default_seconds) if name else default_seconds
        if seconds is None:
            return await handler(request)
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                return await handler(request)
        except TimeoutError:
            if not deadline.expired():
                raise  # a timeout of the handler's own (e.g. a peer call), not ours
            raise errors.UpstreamTimeout(
                f"the request did not finish within {seconds:g} s"
            ) from None

    return middleware
