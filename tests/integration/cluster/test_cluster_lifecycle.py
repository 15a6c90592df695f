"""`hack/cluster.sh up` and `down` on a second, private cluster: down leaves no process behind.

It runs in a temporary CLUSTER_DIR on other ports and another pod CIDR, so the
shared dev cluster that other tests use keeps running.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.net import free_ports, free_run
from tests.support.poll import wait_for
from tests.support.private_cluster import PORTS, private_cluster_env

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[3]
CLUSTER = str(ROOT / "hack" / "cluster.sh")

POD = """
apiVersion: v1
kind: Pod
metadata: {name: sleeper, namespace: default}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: main
    image: python:3.11-slim
    command:
    - python
    - -c
    - "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"
"""


def recorded_pids(pid_dir: Path) -> list[int]:
    return [int(f.read_text().split()[0]) for f in pid_dir.rglob("*.pid")]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes; it only waits for its parent to reap it.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line or environment mention `text` (the cluster's directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            blob = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if text.encode() in blob and alive(int(proc.name)):
            found.append(int(proc.name))
    return found


@pytest.mark.timeout(400)
def test_down_stops_every_process_that_up_started(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    ports = dict(zip(PORTS[:-1], free_ports(len(PORTS) - 1), strict=True))
    ports["KUBELET_PORT"] = free_run(2)  # one for each Node
    env = private_cluster_env(state, ports, node_name="second-node", nodes=2)
    try:
        subprocess.run([CLUSTER, "up"], env=env, check=True, timeout=240, capture_output=True)
        kubectl = [str(state / "bin" / "kubectl"), "--kubeconfig", str(state / "kubeconfig")]
        for node in ("second-node", "second-node-2"):  # one pod on each Node
            pod = POD.replace("sleeper", f"sleeper-{node}").replace(
                "spec:", f"spec:\n  nodeName: {node}", 1
            )
            subprocess.run(
                [*kubectl, "apply", "-f", "-"], input=pod.encode(), check=True, timeout=30
            )

        def started() -> list[Path]:
            found = sorted((state / "pids" / "pods").rglob("*.pid"), key=lambda p: len(p.parts))
            return found if len(found) == 2 else []

        pod_pid_file, other_pid_file = wait_for(
            started, timeout=60, what="the pods' processes to start"
        )
        assert other_pid_file.parent.name == "second-node-2"  # each Node records its own
        pod_record = pod_pid_file.read_text()
        # A new kubelet adopts the running container instead of restarting it.
        subprocess.run(
            [CLUSTER, "restart-kubelet"], env=env, check=True, timeout=120, capture_output=True
        )
        assert pod_pid_file.read_text() == pod_record
        pids = recorded_pids(state / "pids")
        # etcd, apiserver, controller-manager, scheduler, two kubelets, two pods
        assert len(pids) == 8
        assert all(alive(pid) for pid in pids)
    finally:
        subprocess.run([CLUSTER, "down"], env=env, check=True, timeout=120, capture_output=True)
    assert [pid for pid in pids if alive(pid)] == []
    assert processes_mentioning(str(state)) == []
    assert list((state / "pids").rglob("*.pid")) == []
