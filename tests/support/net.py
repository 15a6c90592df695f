"""Ports nobody listens on right now, below the kernel's ephemeral range.

A port the kernel picks for `bind(0)` comes from the ephemeral range
(32768-60999 on Linux), the same range it takes outgoing connections'
source ports from: between the pick and a server's bind (a cluster's
kubelet starts seconds later), any connection on the machine may take it,
and the server fails with EADDRINUSE (a clean-clone CI failed so). Ports
below that range are never handed out by the kernel, so once free they
stay free unless someone binds them by number.
"""

from __future__ import annotations

import random
import socket

PORTS = range(20_000, 32_768)
"""Below Linux's ephemeral ports; above the fixed ports the local clusters use."""
_TRIES = 1_000
_pick = random.SystemRandom()  # its own: tests that seed `random` (hypothesis) do not repeat it


def _bound(host: str, port: int) -> socket.socket | None:
    sock = socket.socket()
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        return None
    return sock


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports: every socket stays bound until all are picked."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(_TRIES):
            if len(sockets) == count:
                return [int(sock.getsockname()[1]) for sock in sockets]
            sock = _bound(host, _pick.choice(PORTS))
            if sock is not None:
                sockets.append(sock)
        raise RuntimeError(f"no {count} free ports in {PORTS}")
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    (port,) = free_ports(1, host)
    return port


def free_run(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive free ports (e.g. a cluster's kubelets)."""
    for _ in range(_TRIES):
        first = _pick.randrange(PORTS.start, PORTS.stop - count)
        sockets = [_bound(host, first + offset) for offset in range(count)]
        for sock in sockets:
            if sock is not None:
                sock.close()
        if all(sock is not None for sock in sockets):
            return first
    raise RuntimeError(f"no {count} consecutive free ports in {PORTS}")
