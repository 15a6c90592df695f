"""Runs one node process: listen, serve, and shut down gracefully on SIGTERM/SIGINT.

Two listeners (docs/node.md, "HTTP surfaces"): the public one (peer protocol, client
API) and the private one (admin API, /metrics, probes), each built by one function
below (`public_site`, `private_site`), so what a listener needs (TLS on the public one)
is added in one place.

On the first signal the node drains (`drain.DrainCoordinator`: readiness
false, no new client work, in-flight work finishes, hand-offs run — sole
content replicated to a peer, then the leaving announcement — all within
`drain_timeout_seconds`, work still in flight then answered 503 `draining`);
a second signal ends the drain at once. Then aiohttp's shutdown closes the
connections, waiting at most `SHUTDOWN_SECONDS` (its default, 60 s, outlasts
the pod's grace period: drain timeout + 10 s), the app's cleanup stops
background tasks and the store, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Final

from aiohttp import web
from marketplace_protocol import identity as identity_module
from marketplace_protocol.clock import Clock, SystemClock
from prometheus_client import CollectorRegistry

from marketplace_node import app as app_module
from marketplace_node import limits, proxy_gate, tls
from marketplace_node.config import NodeSettings
from marketplace_node.metrics import NodeMetrics
from marketplace_node.service import NodeService

logger = logging.getLogger(__name__)

SHUTDOWN_SECONDS: Final = 2.0
"""aiohttp's shutdown after the drain: what is left is responses being written and peer
transfers (peers may fetch from a draining node). aiohttp waits up to twice this (finish,
then cancel and finish), which keeps the exit inside the pod's 10 s margin."""


def build_service(settings: NodeSettings, clock: Clock | None = None) -> NodeService:
    key_file = settings.identity_file or settings.data_dir / "identity" / "ed25519.pem"
    ident = identity_module.load_or_create(key_file)
    return NodeService(
        settings,
        identity=ident,
        clock=clock or SystemClock(),
        metrics=NodeMetrics(CollectorRegistry()),
        tls=certificate_files(settings),
    )


def certificate_files(settings: NodeSettings) -> tls.CertificateFiles | None:
    """The public listener's TLS files, loaded (an `OSError` or `ssl.SSLError` if they
    cannot be); None when it serves plain HTTP."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return tls.CertificateFiles(
        cert=settings.tls_cert_file,
        key=settings.tls_key_file,
        ca=settings.tls_ca_file,
        peer_name=settings.tls_peer_name,
    )


def public_site(runner: web.AppRunner, service: NodeService) -> web.TCPSite:
    """The listener peers and clients reach: HTTPS when the node has certificate files,
    a PROXY protocol v2 gate before HTTP when asked for (`proxy_gate`)."""
    settings = service.settings
    if settings.proxy_protocol:
        return proxy_gate.ProxyProtocolSite(
            runner, settings.host, settings.port, settings.trusted_proxies
        )
    server_tls = service.tls.server if service.tls is not None else None
    return web.TCPSite(runner, settings.host, settings.port, backlog=1024, ssl_context=server_tls)


def private_site(runner: web.AppRunner, settings: NodeSettings) -> web.TCPSite:
    """The listener of the operator, Prometheus and the kubelet's probes."""
    return web.TCPSite(runner, settings.listen_private_host, settings.private_port, backlog=128)


def _runner(application: web.Application) -> web.AppRunner:
    return web.AppRunner(
        application,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=SHUTDOWN_SECONDS,
        # the parser reads more than our own limits allow, so over-long requests get our
        # typed answer (`http_errors.check_sizes`)
        max_line_size=limits.PARSER_LINE_MAX,
        max_field_size=limits.PARSER_LINE_MAX,
    )


async def serve(settings: NodeSettings) -> None:
    service = build_service(settings)
    apps = app_module.build_apps(service)
    public, private = _runner(apps.public), _runner(apps.private)
    await public.setup()  # starts the service (its lifecycle runs with the public app)
    await private.setup()
    await private_site(private, settings).start()  # probes answer from the start
    await public_site(public, service).start()
    logger.info(
        "node %s listening on %s:%d (private %s:%d)",
        service.identity.peer_id,
        settings.host,
        settings.port,
        settings.listen_private_host,
        settings.private_port,
    )
    print(f"READY {service.identity.peer_id} {settings.public_url}", flush=True)
    signalled = asyncio.Event()

    def on_signal() -> None:
        service.drain.handle_signal()  # first: drain; second: end the drain now
        signalled.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await signalled.wait()
    logger.info("signal received: draining")
    await service.drain.wait()
    await public.cleanup()  # stops the service
    await private.cleanup()
    logger.info("stopped")
