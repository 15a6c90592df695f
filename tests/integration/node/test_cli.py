"""`marketplace-node` as users run it: every kind of failure is one line on stderr and
its documented exit code (docs/node.md, "Exit codes"), never a traceback."""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from marketplace_node.api_client import Exit

from tests.support.net import free_port
from tests.support.node_processes import (
    CLI,
    FAST,
    NODE_ERRORS,
    SINGLE_COPY,
    NodeCluster,
    get_json,
)
from tests.support.poll import wait_for

UNREACHABLE = "http://127.9.9.9:7070"  # loopback: refused at once, wherever the tests run


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    return done.returncode, done.stdout, done.stderr


def one_line(stderr: str, *, logs: bool = False) -> str:
    """The error line, after checking it is the only thing on stderr (after the node's
    JSON log lines, with `logs`)."""
    lines = stderr.splitlines()
    assert "Traceback" not in stderr
    if logs:
        lines = [line for line in lines if not line.startswith("{")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("marketplace-node: "), stderr
    return lines[0].removeprefix("marketplace-node: ")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    cluster = NodeCluster.start(tmp_path_factory.mktemp("cli"), 2, SINGLE_COPY)  # sole providers
    yield cluster
    cluster.close()


def publish(cluster: NodeCluster, index: int, tmp_path: Path, content: bytes) -> str:
    """Publish `content` from node `index` under a name of its own: names are fleet-wide, and
    a name's version holds one content only."""
    source = tmp_path / f"pkg-{hashlib.sha256(content).hexdigest()[:12]}"
    source.write_bytes(content)
    node = cluster.nodes[index]
    published = node.cli("publish", str(source), "--name", source.name, "--version", "1.0")
    package_id: str = published["id"]
    return package_id


def test_an_unreachable_node_is_one_line_and_exit_3() -> None:
    code, out, err = run("search", "--node", UNREACHABLE, "x")
    assert (code, out) == (Exit.UNREACHABLE, "")
    assert one_line(err) == f"cannot reach {UNREACHABLE}: connection refused"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "--port", "99999"], "invalid configuration: port: Input should be less than"),
        (["status", "--node", "ftp://127.0.0.1"], "--node must be an http:// or https:// URL"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(args: list[str], says: str) -> None:
    code, _, err = run(*args)
    assert code == Exit.USAGE
    assert one_line(err).startswith(says)


def test_an_unreadable_file_to_publish_is_exit_1(tmp_path: Path) -> None:
    code, _, err = run("publish", str(tmp_path / "missing"), "--name", "a", "--version", "1")
    assert code == Exit.LOCAL
    assert one_line(err) == f"cannot read {tmp_path / 'missing'}: No such file or directory"


def test_publishing_without_an_author_key_says_how_to_make_one(tmp_path: Path) -> None:
    payload = tmp_path / "pkg.txt"
    payload.write_bytes(b"x")
    key = tmp_path / "none.pem"
    code, _, err = run(
        "publish", str(payload), "--name", "a", "--version", "1", "--key-file", str(key)
    )
    assert code == Exit.LOCAL
    assert one_line(err) == f"no author key at {key}; create one: marketplace-node key new"


def test_a_port_in_use_is_exit_1(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        code, _, err = run(
            "run", "--port", str(port), "--data-dir", str(tmp_path), env=os.environ | FAST
        )
    assert code == Exit.LOCAL
    line = one_line(err, logs=True)
    assert line.startswith("cannot start: "), line
    assert line.endswith("address already in use"), line


def test_an_unknown_package_is_the_nodes_404_and_exit_4(nodes: NodeCluster) -> None:
    unknown = "0" * 32  # a package id; a name goes to the resolver, which 404s the same way
    code, _, err = run("fetch", unknown, "-o", "/dev/null", "--node", nodes.nodes[0].url)
    assert code == Exit.REFUSED
    assert one_line(err).startswith(f"{nodes.nodes[0].url}/api/v1/packages/{unknown} answered 404 ")
    code, _, err = run("fetch", "nope@^1", "-o", "/dev/null", "--node", nodes.nodes[0].url)
    assert code == Exit.REFUSED
    assert "/api/v1/names/nope/resolve" in one_line(err)


def test_content_that_contradicts_its_digest_is_exit_6(nodes: NodeCluster, tmp_path: Path) -> None:
    node = nodes.nodes[0]
    content = b"the real bytes"
    package_id = publish(nodes, 0, tmp_path, content)
    (node.data_dir / "blobs" / hashlib.sha256(content).hexdigest()).write_bytes(b"THE real bytes")
    out = tmp_path / "copy"
    code, _, err = run("fetch", package_id, "-o", str(out), "--node", node.url)
    assert code == Exit.INTEGRITY
    assert one_line(err).startswith(f"the content of {package_id} does not match")
    assert not out.exists()


def test_a_provider_serving_corrupt_bytes_is_the_nodes_integrity_failed_and_exit_6(
    nodes: NodeCluster, tmp_path: Path
) -> None:
    reader, provider = nodes.nodes
    content = b"provided bytes"
    package_id = publish(nodes, 1, tmp_path, content)
    wait_for(
        functools.partial(_knows, reader.url, package_id),
        timeout=30,
        what="the catalogue to reach the reader",
        ignoring=NODE_ERRORS,
    )
    (provider.data_dir / "blobs" / hashlib.sha256(content).hexdigest()).write_bytes(
        b"PROVIDED BYTES"
    )
    code, _, err = run("fetch", package_id, "-o", str(tmp_path / "x"), "--node", reader.url)
    assert code == Exit.INTEGRITY
    line = one_line(err)
    assert "answered 502 integrity_failed: " in line, line
    assert f"providers={provider.peer_id}" in line, line
    assert not (tmp_path / "x").exists()


def _knows(url: str, package_id: str) -> bool:
    return bool(get_json(f"{url}/api/v1/packages/{package_id}"))


def test_a_package_whose_only_provider_is_gone_is_exit_5(
    nodes: NodeCluster, tmp_path: Path
) -> None:
    """Last in this module: it kills the second node."""
    reader, provider = nodes.nodes
    package_id = publish(nodes, 1, tmp_path, b"only here")
    wait_for(
        functools.partial(_knows, reader.url, package_id),
        timeout=30,
        what="the catalogue to reach the reader",
        ignoring=NODE_ERRORS,
    )
    provider.kill()
    code, out, err = run("fetch", package_id, "-o", str(tmp_path / "x"), "--node", reader.url)
    assert (code, out) == (Exit.FAILED, "")
    line = one_line(err)
    assert line.startswith(f"{reader.url}/api/v1/packages/{package_id}/content answered 502 ")
    assert "upstream_failed" in line, line
