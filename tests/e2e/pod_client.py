"""Connections that come from a pod's own address, as the pod itself would open them,
under either pod network of the local kubelet (docs/local-cluster.md):

- POD_NETWORK=netns: from inside the pod's network namespace (`/run/netns/<prefix>-<uid>`),
  where the pod's address is the only one and the packets cross the cluster's bridge;
- loopback: from the host, bound to the pod's loopback address, which is where the pod's
  own connections come from in that mode.

So a node under test sees a real peer's or balancer's address either way, never the
host's.
"""

from __future__ import annotations

import functools
import http.client
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_kubelet.netns import run_in

NETNS_DIR = Path("/run/netns")


@dataclass(frozen=True)
class PodSource:
    """Where connections from one pod come from: its address, and its network namespace
    when it has one of its own."""

    address: str
    netns: Path | None

    def connect(self, dest: tuple[str, int], timeout: float = 5.0) -> socket.socket:
        if self.netns is not None:
            # A socket keeps the namespace it was made in: connected there, used here.
            return run_in(self.netns, functools.partial(socket.create_connection, dest, timeout))
        return socket.create_connection(dest, timeout=timeout, source_address=(self.address, 0))

    def get(
        self, host: str, port: int, path: str, headers: dict[str, str], timeout: float = 3.0
    ) -> tuple[int, dict[str, Any] | None]:
        """One HTTP GET from this pod: (status, the JSON error body of a 4xx/5xx or None)."""
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.sock = self.connect((host, port), timeout)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        return resp.status, (json.loads(body) if resp.status >= 400 else None)


def pod_source(pod: dict[str, Any]) -> PodSource:
    """The source of a pod object with an address (status.podIP)."""
    address = str(pod["status"]["podIP"])
    netns = next(NETNS_DIR.glob(f"*-{pod['metadata']['uid']}"), None)
    return PodSource(address=address, netns=netns)
