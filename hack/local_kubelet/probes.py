"""Readiness, liveness and startup probes, and preStop hooks: httpGet, tcpSocket, exec."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from local_kubelet.model import ContainerPort, Handler, Probe


def resolve_port(port: int | str, ports: Sequence[ContainerPort]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or port.isdigit():
        return int(port)
    for declared in ports:
        if declared.name == port:
            return declared.container_port
    raise ValueError(f"port {port!r} is not a named port of the container")


@dataclass
class ProbeTracker:
    """Thresholds over consecutive results (pure): when does the verdict flip?"""

    probe: Probe
    verdict: bool
    _successes: int = 0
    _failures: int = 0

    def observe(self, ok: bool) -> bool:
        """Record one result; the verdict after it."""
        if ok:
            self._successes, self._failures = self._successes + 1, 0
            if self._successes >= self.probe.success_threshold:
                self.verdict = True
        else:
            self._failures, self._successes = self._failures + 1, 0
            if self._failures >= self.probe.failure_threshold:
                self.verdict = False
        return self.verdict


async def run_handler(
    handler: Handler,
    *,
    session: aiohttp.ClientSession,
    pod_ip: str,
    ports: Sequence[ContainerPort],
    pid: int | None,
    env: Mapping[str, str],
    time_limit: float,
) -> bool:
    """Run a probe or hook once; success as Kubernetes defines it."""
    try:
        async with asyncio.timeout(time_limit):
            if handler.http_get is not None:
                get = handler.http_get
                host = get.host or pod_ip
                url = f"{get.scheme.lower()}://{host}:{resolve_port(get.port, ports)}{get.path}"
                headers = {h.name: h.value for h in get.http_headers}
                async with session.get(url, headers=headers, ssl=False) as response:
                    return 200 <= response.status < 400
            if handler.tcp_socket is not None:
                sock = handler.tcp_socket
                _, writer = await asyncio.open_connection(
                    sock.host or pod_ip, resolve_port(sock.port, ports)
                )
                writer.close()
                await writer.wait_closed()
                return True
            if handler.exec is not None and pid is not None:
                # Run in the container's mount namespace, so it sees its volumes.
                nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
                proc = await asyncio.create_subprocess_exec(
                    nsenter,
                    "--mount",
                    "--target",
                    str(pid),
                    "--",
                    *handler.exec.command,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                    env=dict(env),
                )
                try:
                    return await proc.wait() == 0
                finally:
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
    except (OSError, ValueError, aiohttp.ClientError, TimeoutError):
        return False
    return False
