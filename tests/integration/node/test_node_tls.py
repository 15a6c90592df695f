"""Three real node processes peering over HTTPS with a fleet CA: they mesh, verify each
other by the fleet's name, a client fetches with the CA, and a renewed certificate is
served without a restart."""

from __future__ import annotations

import hashlib
import os
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from marketplace_node import tls
from marketplace_operator import certs

from tests.support.node_processes import CLI, NODE_ERRORS, Node, NodeCluster
from tests.support.poll import wait_for
from tests.support.tls_probe import serial, served_serial

FLEET_NAME = "blue.shop.svc"
NOW = datetime.now(UTC)


def write_pair(directory: Path, pair: certs.KeyPair, ca: certs.KeyPair) -> None:
    """As the kubelet updates a Secret volume: new files, then one rename each."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in (
        ("tls.crt", pair.cert_pem),
        ("tls.key", pair.key_pem),
        ("ca.crt", ca.cert_pem),
    ):
        staged = directory / f".{name}.new"
        staged.write_bytes(data)
        os.replace(staged, directory / name)


@pytest.fixture
def fleet_ca() -> certs.KeyPair:
    return certs.new_ca("fleet CA", now=NOW, valid=timedelta(days=30))


@pytest.fixture
def cluster(tmp_path: Path, fleet_ca: certs.KeyPair) -> Iterator[NodeCluster]:
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(fleet_ca.cert_pem)

    def with_tls(node: Node) -> None:
        # Only the fleet's name: peers dial addresses no certificate names.
        pair = certs.issue(fleet_ca, dns_names=[FLEET_NAME], now=NOW, valid=timedelta(days=1))
        directory = tmp_path / f"tls{node.index}"
        write_pair(directory, pair, fleet_ca)
        node.env |= {
            "MARKETPLACE_NODE_TLS_CERT_FILE": str(directory / "tls.crt"),
            "MARKETPLACE_NODE_TLS_KEY_FILE": str(directory / "tls.key"),
            "MARKETPLACE_NODE_TLS_CA_FILE": str(directory / "ca.crt"),
            "MARKETPLACE_NODE_TLS_PEER_NAME": FLEET_NAME,
        }
        node.context = tls.client_context(ca_file, FLEET_NAME)
        node.client_flags = ("--ca-file", str(ca_file), "--server-name", FLEET_NAME)

    started = NodeCluster.start(tmp_path, 3, prepare=with_tls)
    try:
        yield started
    finally:
        started.close()
        started.show_logs()


def test_a_fleet_peers_over_tls_and_a_client_fetches_with_the_ca(
    cluster: NodeCluster, tmp_path: Path, fleet_ca: certs.KeyPair
) -> None:
    first, second, third = cluster.nodes
    assert first.url.startswith("https://")  # meshed over https: NodeCluster waited for it
    content = os.urandom(4096)
    source = tmp_path / "tool.bin"
    source.write_bytes(content)
    published = first.cli(
        "publish", str(source), "--name", "tls-tool", "--version", "1.0", "--category", "tools"
    )
    out = tmp_path / "fetched.bin"
    wait_for(
        lambda: third.cli("fetch", "tls-tool@1.0", "--output", str(out))["id"] == published["id"],
        timeout=60,
        what="the package to reach the third node over TLS",
        ignoring=(AssertionError, *NODE_ERRORS),
    )
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(content).hexdigest()

    # Without the fleet's CA a client refuses the node (exit 3), and so with another name.
    for flags in ((), ("--ca-file", str(tmp_path / "ca.crt"), "--server-name", "red.shop.svc")):
        refused = subprocess.run(
            [CLI, "status", "--node", second.url, *flags],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert refused.returncode == 3, refused.stderr
        assert b"certificate is not trusted" in refused.stderr

    # A renewed certificate is served to the next connection; the process is the same.
    pid = second.process.pid if second.process else None
    renewed = certs.issue(fleet_ca, dns_names=[FLEET_NAME], now=NOW, valid=timedelta(days=1))
    write_pair(tmp_path / "tls1", renewed, fleet_ca)
    want = serial(renewed.cert_pem)
    context = second.context
    assert context is not None
    wait_for(
        lambda: served_serial(second.host, second.port, context, FLEET_NAME) == want,
        timeout=30,
        what="the renewed certificate to be served",
        ignoring=(OSError, ssl.SSLError),
    )
    assert second.process is not None
    assert second.process.pid == pid
    assert second.process.poll() is None
    assert second.cli("status")["peerId"] == second.peer_id
