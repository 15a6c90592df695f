"""Real `marketplace-node run` processes for multi-node tests: each on its own 127.0.0.x
address with its own data directory; `NodeCluster` waits with deadlines and kills every
process it started on `close()`."""

from __future__ import annotations

import functools
import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marketplace_node import authors
from marketplace_protocol import identity

from tests.support.net import free_port
from tests.support.poll import wait_for

# What a node that is still starting, or changing, answers a probe with.
NODE_ERRORS = (OSError, ValueError, KeyError, IndexError)
CLI = str(Path(sys.executable).with_name("marketplace-node"))
FAST = {
    "MARKETPLACE_NODE_LIVENESS_INTERVAL_SECONDS": "0.5",
    "MARKETPLACE_NODE_SYNC_INTERVAL_SECONDS": "2",
    "MARKETPLACE_NODE_PEER_TIMEOUT_SECONDS": "5",
    "MARKETPLACE_NODE_FETCH_TIMEOUT_SECONDS": "5",
    "MARKETPLACE_NODE_DRAIN_TIMEOUT_SECONDS": "5",
    "MARKETPLACE_NODE_REPAIR_INTERVAL_SECONDS": "1",
    "MARKETPLACE_NODE_LOG_LEVEL": "INFO",
    # Test nodes call loopback peers only, whatever a test (or a fuzzer) tells them.
    "MARKETPLACE_NODE_PEER_NETWORKS": "127.0.0.0/8",
}

# One copy per package (factor 1): for tests that follow where copies are.
SINGLE_COPY = {"MARKETPLACE_NODE_REPLICATION_FACTOR": "1", "MARKETPLACE_NODE_MIN_IN_SYNC": "1"}


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    context: ssl.SSLContext | None = None,
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str, *, context: ssl.SSLContext | None = None) -> Any:
    status, body = http("GET", url, context=context)
    if status != 200:
        raise ValueError(f"{url}: {status} {body[:200]!r}")
    return json.loads(body)


@dataclass
class Node:
    index: int
    host: str
    port: int
    data_dir: Path
    log: Path
    bootstrap: list[str]
    process: subprocess.Popen[bytes] | None = None
    peer_id: str = ""
    env: dict[str, str] = field(default_factory=dict)
    context: ssl.SSLContext | None = None  # set: the node serves https, verified with it
    client_flags: tuple[str, ...] = ()  # e.g. --ca-file and --server-name for https
    private_port: int = 0  # free_port(host) when 0

    def __post_init__(self) -> None:
        if not self.private_port:
            self.private_port = free_port(self.host)

    @property
    def url(self) -> str:
        """The public listener: peer protocol and client API."""
        scheme = "https" if self.context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def private_url(self) -> str:
        """The private listener: admin API, /metrics and probes."""
        return f"http://{self.host}:{self.private_port}"

    def start(self) -> None:
        env = (
            os.environ
            | FAST
            | {
                "MARKETPLACE_NODE_HOST": self.host,
                "MARKETPLACE_NODE_PORT": str(self.port),
                "MARKETPLACE_NODE_PRIVATE_PORT": str(self.private_port),
                "MARKETPLACE_NODE_DATA_DIR": str(self.data_dir),
                "MARKETPLACE_NODE_BOOTSTRAP_PEERS": ",".join(self.bootstrap),
            }
            | self.env
        )
        out = self.log.open("ab")
        self.process = subprocess.Popen([CLI, "run"], env=env, stdout=out, stderr=subprocess.STDOUT)
        out.close()

    def wait_listening(self) -> None:
        self.peer_id = wait_for(
            lambda: get_json(f"{self.url}/api/v1/status", context=self.context)["peerId"],
            timeout=90,
            what=f"node {self.index} to listen",
            ignoring=NODE_ERRORS,
        )

    def cli(self, *args: str, author_key: Path | None = None) -> Any:
        """Run a client command against this node as a publisher (an author key of the
        cluster's directory unless `author_key` names another)."""
        key = author_key or self.data_dir.parent / "author.pem"
        identity.load_or_create(key)
        result = subprocess.run(
            [CLI, *args, "--node", self.url, *self.client_flags],
            capture_output=True,
            timeout=60,
            check=False,
            env=os.environ | {authors.KEY_ENV: str(key)},
        )
        assert result.returncode == 0, result.stderr.decode()
        return json.loads(result.stdout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def _knows(node: Node, peers: int) -> bool:
    return len(get_json(f"{node.url}/api/v1/peers", context=node.context)) >= peers


@dataclass
class NodeCluster:
    root: Path
    nodes: list[Node] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        root: Path,
        count: int,
        env: dict[str, str] | None = None,
        *,
        prepare: Callable[[Node], None] | None = None,
    ) -> NodeCluster:
        """`count` nodes bootstrapped from the first, with `env` on top of `FAST`;
        `prepare` may change each node before it starts (e.g. give it TLS files)."""
        cluster = cls(root)
        seed: list[str] = []
        for i in range(count):
            host = f"127.0.0.{40 + i}"
            node = Node(
                i, host, free_port(host), root / f"node{i}", root / f"node{i}.log", list(seed)
            )
            node.env = dict(env or {})
            if prepare is not None:
                prepare(node)
            cluster.nodes.append(node)
            if not seed:
                seed.append(node.url)
        try:
            for node in cluster.nodes:
                node.start()
            for node in cluster.nodes:
                node.wait_listening()
            cluster.wait_meshed()
        except BaseException:
            cluster.close()
            raise
        return cluster

    def add(self, *, bootstrap: list[str], env: dict[str, str] | None = None) -> Node:
        """Start one more node (e.g. configured only through its policy directory)."""
        i = len(self.nodes)
        host = f"127.0.0.{40 + i}"
        node = Node(
            i, host, free_port(host), self.root / f"node{i}", self.root / f"node{i}.log", bootstrap
        )
        node.env = env or {}
        self.nodes.append(node)
        node.start()
        node.wait_listening()
        return node

    def wait_meshed(self, nodes: list[Node] | None = None) -> None:
        live = nodes or [n for n in self.nodes if n.process and n.process.poll() is None]
        for node in live:
            wait_for(
                functools.partial(_knows, node, len(live) - 1),
                timeout=60,
                what=f"node {node.index} to know {len(live) - 1} peers",
                ignoring=NODE_ERRORS,
            )

    def close(self) -> None:
        for node in self.nodes:
            node.kill()

    def show_logs(self, tail: int = 3000) -> None:
        """Each node's log tail on stderr (pytest shows it for a failed test)."""
        for node in self.nodes:
            if node.log.exists():
                sys.stderr.write(
                    f"--- node {node.index} log tail ---\n{node.log.read_text()[-tail:]}\n"
                )
