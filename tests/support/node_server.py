"""A node served in process (aiohttp's TestServer around the real app), for HTTP-level tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp.test_utils import TestServer
from marketplace_node import app
from marketplace_node.config import NodeSettings
from marketplace_node.metrics import NodeMetrics
from marketplace_node.service import NodeService
from marketplace_protocol import identity
from marketplace_protocol.clock import SystemClock
from prometheus_client import CollectorRegistry


@contextlib.asynccontextmanager
async def serving(settings: NodeSettings) -> AsyncIterator[tuple[TestServer, NodeService]]:
    """The node `settings` describe, listening on 127.0.0.1 (`settings.port`, else any port)."""
    service = NodeService(
        settings,
        identity=identity.Identity.generate(),
        clock=SystemClock(),
        metrics=NodeMetrics(CollectorRegistry()),
    )
    server = TestServer(app.build_app(service), host="127.0.0.1", port=settings.port or None)
    await server.start_server()
    try:
        yield server, service
    finally:
        await server.close()
