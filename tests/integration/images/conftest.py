"""Fixtures for the container images: build them (cached), and a private containerd.

`make test-images` builds the images with hack/images.sh and runs these tests;
they start containerd with their own root, state and socket (Debian's
containerd and runc; no CRI, no registry) and stop it afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "marketplace-fleet"
NAMESPACE = "marketplace-fleet"  # containerd namespace


@dataclass(frozen=True)
class Images:
    node: str
    operator: str
    archives: tuple[Path, ...]


@pytest.fixture(scope="session")
def images() -> Images:
    """The images of the working tree, built by hack/images.sh (a no-op when current)."""
    done = subprocess.run(
        [str(ROOT / "hack" / "images.sh")], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"hack/images.sh failed:\n{done.stderr[-4000:]}")
    node, operator = done.stdout.split()
    tag = node.rsplit(":", 1)[1]
    archives = tuple(CACHE / "images" / f"{name}-{tag}.tar" for name in ("node", "operator"))
    return Images(node=node, operator=operator, archives=archives)


@dataclass(frozen=True)
class Ctr:
    """`ctr` against the private containerd."""

    address: Path

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = ["ctr", "--address", str(self.address), "--namespace", NAMESPACE, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
        return done

    def task_pid(self, container: str) -> int:
        for line in self("tasks", "ls").stdout.splitlines()[1:]:
            name, pid, _status = line.split()
            if name == container:
                return int(pid)
        pytest.fail(f"no task for container {container}")

    def remove(self, container: str) -> None:
        """Kill the task and delete the container; quiet if either is gone."""
        base = ["ctr", "--address", str(self.address), "--namespace", NAMESPACE]
        for args in (
            ["tasks", "kill", "--signal", "SIGKILL", container],
            ["tasks", "delete", "--force", container],
            ["containers", "delete", container],
        ):
            subprocess.run(base + args, capture_output=True, timeout=30, check=False)
            time.sleep(0.2)


def _containerd_config(state: Path) -> str:
    return f"""version = 2
root = "{CACHE / "images" / "containerd"}"
state = "{state / "state"}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{state / "containerd.sock"}"
"""


@pytest.fixture(scope="session")
def ctr(images: Images) -> Iterator[Ctr]:
    """A private containerd holding the current images; stopped at the end."""
    if shutil.which("containerd") is None or shutil.which("runc") is None:
        pytest.fail("containerd/runc missing: hack/images.sh installs them")
    state = Path(tempfile.mkdtemp(prefix="mf-ctd-"))  # short: a socket path is <108 bytes
    (state / "config.toml").write_text(_containerd_config(state))
    log = (state / "containerd.log").open("w")
    daemon = subprocess.Popen(
        ["containerd", "--config", str(state / "config.toml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    tool = Ctr(address=state / "containerd.sock")
    try:
        deadline = time.monotonic() + 30
        while not tool.address.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"containerd did not start: {(state / 'containerd.log').read_text()}")
            time.sleep(0.1)
        current = {images.node, images.operator}
        for stale in set(tool("images", "ls", "--quiet").stdout.split()) - current:
            tool("images", "rm", stale)  # containerd collects their layers
        for archive in images.archives:
            tool("images", "import", str(archive), timeout=300)
        yield tool
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)
        log.close()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def container_name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"
