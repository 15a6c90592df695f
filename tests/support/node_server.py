"""A node served in process (aiohttp's TestServer around the real app), for HTTP-level tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import NamedTuple

from aiohttp.test_utils import TestServer
from marketplace_node import app, limits
from marketplace_node.config import NodeSettings
from marketplace_node.metrics import NodeMetrics
from marketplace_node.service import NodeService
from marketplace_protocol import identity
from marketplace_protocol.clock import SystemClock
from prometheus_client import CollectorRegistry


class Served(NamedTuple):
    public: TestServer
    service: NodeService
    private: TestServer


@contextlib.asynccontextmanager
async def serving(settings: NodeSettings) -> AsyncIterator[Served]:
    """The node `settings` describe, its public listener on `settings.host` (`settings.port`,
    else any port), its private one on any port of 127.0.0.1."""
    service = NodeService(
        settings,
        identity=identity.Identity.generate(),
        clock=SystemClock(),
        metrics=NodeMetrics(CollectorRegistry()),
    )
    apps = app.build_apps(service)
    public = TestServer(apps.public, host=settings.host, port=settings.port or None)
    private = TestServer(apps.private, host="127.0.0.1")
    parser = limits.PARSER_LINE_MAX  # as `runner` gives aiohttp
    await public.start_server(max_line_size=parser, max_field_size=parser)
    try:
        await private.start_server(max_line_size=parser, max_field_size=parser)
        try:
            yield Served(public, service, private)
        finally:
            await private.close()
    finally:
        await public.close()
