"""A real `marketplace-node run` draining with an upload in flight: the upload gets an answer,
the process exits 0 within the drain timeout plus its shutdown margin, and a second SIGTERM
ends the drain at once (docs/node.md, "Drain")."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from marketplace_node.runner import SHUTDOWN_SECONDS

from tests.support.net import free_port
from tests.support.node_processes import NODE_ERRORS, Node, http
from tests.support.poll import wait_for

HOST = "127.0.0.60"
CONTENT = b"slow upload " * 100_000
DIGEST = hashlib.sha256(CONTENT).hexdigest()
# aiohttp waits up to twice its shutdown timeout; the rest is process start-up noise.
MARGIN = 2 * SHUTDOWN_SECONDS + 3
SETTLE = 1.0  # after the first SIGTERM the node still serves this long (drain.py)


def start(tmp_path: Path, drain_seconds: float) -> Node:
    port = free_port(HOST)
    node = Node(0, HOST, port, tmp_path / "data", tmp_path / "node.log", [])
    node.env = {
        "MARKETPLACE_NODE_DRAIN_TIMEOUT_SECONDS": str(drain_seconds),
        "MARKETPLACE_NODE_TERMINATION_SETTLE_SECONDS": str(SETTLE),
    }
    node.start()
    node.wait_listening()
    return node


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.kill()


def begin_upload(node: Node) -> socket.socket:
    """A PUT whose body has only begun: the request is in the handler, waiting for bytes."""
    sock = socket.create_connection((node.host, node.port), timeout=30)
    head = (
        f"PUT /api/v1/blobs/{DIGEST} HTTP/1.1\r\nHost: {node.host}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(CONTENT)}\r\n\r\n"
    )
    sock.sendall(head.encode() + CONTENT[:1000])
    wait_for(
        lambda: in_flight(node) == 1, timeout=30, what="the upload in flight", ignoring=NODE_ERRORS
    )
    return sock


def in_flight(node: Node) -> float:
    _, body = http("GET", f"{node.private_url}/metrics")
    for line in body.decode().splitlines():
        if line.startswith("marketplace_node_in_flight_requests "):
            return float(line.split()[1])
    raise ValueError("no in-flight gauge")


def answer(sock: socket.socket) -> tuple[int, dict[str, str]]:
    """The response the server sent (status, JSON body), read to the end of the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if body and len(body) >= _length(head):
            break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body[: _length(head)])


def _length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


def test_upload_in_flight_at_the_deadline_is_answered_and_the_node_exits_0(
    node_factory: list[Node], tmp_path: Path
) -> None:
    drain = 3.0
    node = start(tmp_path, drain)
    node_factory.append(node)
    assert node.process is not None
    with begin_upload(node) as sock:
        sent = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        status, body = answer(sock)  # the client stalls: the deadline cuts it off, with an answer
    answered = time.monotonic() - sent
    assert (status, body["code"]) == (503, "draining")
    assert answered < SETTLE + drain + MARGIN
    assert node.process.wait(timeout=SETTLE + drain + MARGIN + 10) == 0
    assert time.monotonic() - sent < SETTLE + drain + MARGIN


def test_upload_that_finishes_during_the_drain_is_stored(
    node_factory: list[Node], tmp_path: Path
) -> None:
    node = start(tmp_path, 20.0)
    node_factory.append(node)
    assert node.process is not None
    with begin_upload(node) as sock:
        node.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(CONTENT[1000:])
        status, body = answer(sock)
    assert (status, body) == (201, {"digest": DIGEST, "size": len(CONTENT)})
    assert node.process.wait(timeout=20 + MARGIN + 10) == 0
    assert (tmp_path / "data" / "blobs" / DIGEST).read_bytes() == CONTENT


def test_second_sigterm_ends_the_drain_at_once(node_factory: list[Node], tmp_path: Path) -> None:
    drain = 60.0
    node = start(tmp_path, drain)
    node_factory.append(node)
    assert node.process is not None
    with begin_upload(node) as sock:
        node.process.send_signal(signal.SIGTERM)
        time.sleep(SETTLE + 1)  # the drain has begun
        sent = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        status, body = answer(sock)
    assert (status, body["code"]) == (503, "draining")
    assert node.process.wait(timeout=drain) == 0
    assert time.monotonic() - sent < MARGIN
