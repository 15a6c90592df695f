"""The kubelet's HTTPS endpoint for container logs, so `kubectl logs` works.

The API server proxies `kubectl logs` to GET /containerLogs/{ns}/{pod}/{container}
on the node's InternalIP and kubelet port, presenting its kubelet-client
certificate; only clients with a certificate from the cluster CA get in.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

LogLocator = Callable[[str, str, str, bool], Path | None]
"""(namespace, pod, container, previous) -> the log file, if any."""

FOLLOW_POLL_SECONDS = 0.2


def tail_bytes(data: bytes, lines: int | None, limit: int | None) -> bytes:
    """The last `lines` lines, then at most the last `limit` bytes (pure)."""
    if lines is not None:
        parts = data.splitlines(keepends=True)
        data = b"".join(parts[-lines:] if lines > 0 else [])
    if limit is not None and len(data) > limit:
        data = data[-limit:]
    return data


def _int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


def make_app(locate: LogLocator, still_running: Callable[[Path], bool]) -> web.Application:
    async def container_logs(request: web.Request) -> web.StreamResponse:
        info = request.match_info
        previous = request.query.get("previous") in ("true", "1")
        path = locate(info["namespace"], info["pod"], info["container"], previous)
        if path is None:
            raise web.HTTPNotFound(
                text=f'container "{info["container"]}" of pod "{info["pod"]}" is not on this node\n'
            )
        if not path.exists():
            # What a kubelet answers, and kubectl shows, before the first start.
            raise web.HTTPBadRequest(
                text=f'container "{info["container"]}" in pod "{info["pod"]}" is waiting to start\n'
            )
        data = path.read_bytes()
        body = tail_bytes(data, _int(request, "tailLines"), _int(request, "limitBytes"))
        if request.query.get("follow") not in ("true", "1"):
            return web.Response(body=body, content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(body)
        offset = len(data)
        while True:
            with path.open("rb") as log:
                log.seek(offset)
                chunk = log.read()
            if chunk:
                offset += len(chunk)
                await response.write(chunk)
            elif not still_running(path):
                break
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
        return response

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", container_logs)
    app.router.add_get("/healthz", healthz)
    return app


def tls_context(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
    context.load_cert_chain(str(cert), str(key))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


async def serve(
    app: web.Application, host: str, port: int, context: ssl.SSLContext
) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=context).start()
    return runner
