"""Each image starts under containerd/runc the way the chart and the operator run it
(non-root, read-only root filesystem, writable mounts only) and reports healthy.

Slow the first time (a Debian base and two image builds, about a minute and a
half), so out of the fast path: `make test-images` (part of `make test`) sets
MARKETPLACE_TEST_IMAGES=1.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.support.net import free_port

from .conftest import Ctr, Images

pytestmark = pytest.mark.skipif(
    not os.environ.get("MARKETPLACE_TEST_IMAGES"),
    reason="image tests build images: run `make test-images`",
)

UID = 65532  # the images' USER, and the pods' runAsUser


def wait_http_ok(url: str, *, timeout: float, log: Path) -> bytes:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: bytes = response.read()
                if response.status == 200:
                    return body
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
        time.sleep(0.3)
    output = log.read_text()[-3000:] if log.exists() else "(no output)"
    pytest.fail(f"{url} did not answer 200 within {timeout}s (last: {last!r}):\n{output}")


def writable_dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    os.chown(path, UID, UID)
    return path


def assert_runs_as_non_root(ctr: Ctr, container: str) -> None:
    status = Path(f"/proc/{ctr.task_pid(container)}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(UID)] * 4, uid_line


def restricted(tmp_path: Path, *mounts: str) -> list[str]:
    """ctr flags for what the chart asks: read-only root, writable /tmp and data only."""
    flags = ["--net-host", "--read-only", f"--log-uri=file://{tmp_path / 'container.log'}"]
    tmp = writable_dir(tmp_path, "tmp")
    flags += ["--mount", f"type=bind,src={tmp},dst=/tmp,options=rbind:rw"]
    for mount in mounts:
        flags += ["--mount", mount]
    return flags


def test_node_image_serves_healthz(
    ctr: Ctr, images: Images, tmp_path: Path, container_name: str
) -> None:
    host = "127.0.0.1"
    port, private = free_port(host), free_port(host)
    data = writable_dir(tmp_path, "data")
    flags = restricted(tmp_path, f"type=bind,src={data},dst=/var/lib/marketplace,options=rbind:rw")
    env = [
        f"MARKETPLACE_NODE_HOST={host}",
        f"MARKETPLACE_NODE_PORT={port}",
        f"MARKETPLACE_NODE_PRIVATE_PORT={private}",
    ]
    try:
        ctr("run", "--detach", *flags, *(f"--env={e}" for e in env), images.node, container_name)
        wait_http_ok(f"http://{host}:{private}/healthz", timeout=60, log=tmp_path / "container.log")
        assert_runs_as_non_root(ctr, container_name)
        # The node created its identity in the data volume, as the non-root user.
        assert any(p.stat().st_uid == UID for p in data.rglob("*"))
    finally:
        ctr.remove(container_name)


def test_operator_image_starts_and_reports_healthy(
    ctr: Ctr, images: Images, tmp_path: Path, container_name: str, kubeconfig: Path
) -> None:
    """The operator against the local cluster, watching one empty namespace of its own."""
    host = "127.0.0.1"
    port = free_port(host)
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig.read_text())
    config.chmod(0o644)  # readable by the image's non-root user
    watched = f"t-img-{uuid.uuid4().hex[:6]}"
    env = [
        "KUBECONFIG=/etc/marketplace/kubeconfig",
        f"MARKETPLACE_OPERATOR_NAMESPACES={json.dumps([watched])}",
        f"MARKETPLACE_OPERATOR_LIVENESS_ENDPOINT=http://{host}:{port}/healthz",
        "MARKETPLACE_OPERATOR_METRICS_PORT=0",
    ]
    flags = restricted(
        tmp_path, f"type=bind,src={config},dst=/etc/marketplace/kubeconfig,options=rbind:ro"
    )
    try:
        ctr(
            "run", "--detach", *flags, *(f"--env={e}" for e in env), images.operator, container_name
        )
        wait_http_ok(f"http://{host}:{port}/healthz", timeout=90, log=tmp_path / "container.log")
        assert_runs_as_non_root(ctr, container_name)
    finally:
        ctr.remove(container_name)
