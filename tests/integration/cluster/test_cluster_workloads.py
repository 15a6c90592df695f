"""Pods really run on the local cluster: readiness, IPs, restarts, deletion, GC, logs."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[3]
Wait = Callable[..., Any]


def python_pod(name: str, script: str, **spec: Any) -> dict[str, Any]:
    """A pod running `python -c script` with the pod's IP in $POD_IP."""
    container: dict[str, Any] = {
        "name": "main",
        "image": "python:3.11-slim",
        "command": ["python", "-u", "-c", script],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
    }
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container], **spec},
    }


def host_dir(path: Path) -> dict[str, Any]:
    """A hostPath volume `out` for results the test reads directly."""
    return {"name": "out", "hostPath": {"path": str(path), "type": "DirectoryOrCreate"}}


def pod_gone(core: Any, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, namespace)
    except client.ApiException as exc:
        return bool(exc.status == 404)
    return False


def test_deployment_of_http_server_gets_ready_and_answers_on_its_pod_ip(
    api_client: Any, core: Any, namespace: str, wait: Wait
) -> None:
    apps: Any = client.AppsV1Api(api_client)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        body={
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "python:3.11-slim",
                                "command": ["python", "-m", "http.server", "--bind", "$(POD_IP)"],
                                "args": ["8080"],
                                "env": [
                                    {
                                        "name": "POD_IP",
                                        "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                                    }
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/", "port": 8080},
                                    "periodSeconds": 1,
                                },
                            }
                        ]
                    },
                },
            },
        },
    )
    wait(
        lambda: (
            (apps.read_namespaced_deployment("web", namespace).status.available_replicas or 0) >= 1
        ),
        timeout=60,
        what="the deployment to become available",
    )
    pod = core.list_namespaced_pod(namespace, label_selector="app=web").items[0]
    ip = pod.status.pod_ip
    # From its Node's slice of the pod range, under either pod network (loopback: 127.N,
    # netns: 10.N): never the Node's own address.
    node = core.read_node(pod.spec.node_name)
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(node.spec.pod_cidr)
    assert ip != pod.status.host_ip
    ready = {c.type: c.status for c in pod.status.conditions}
    assert ready["Ready"] == "True"
    assert ready["ContainersReady"] == "True"
    with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as response:
        assert response.status == 200
    # The server listens on its own pod IP only, not on the node's address.
    with pytest.raises(OSError):
        urllib.request.urlopen("http://127.0.0.1:8080/", timeout=2)


SIGTERM_RECORDER = """
import os, pathlib, signal, sys, time
out = pathlib.Path("/out")
def on_term(*_):
    (out / "signal").write_text("SIGTERM")
    if os.environ["EXIT_ON_TERM"] == "1":
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
(out / "pid").write_text(str(os.getpid()))
while True:
    time.sleep(0.05)
"""


def _recorder(name: str, tmp_path: Path, *, exit_on_term: bool) -> dict[str, Any]:
    return python_pod(
        name,
        SIGTERM_RECORDER,
        container={
            "env": [{"name": "EXIT_ON_TERM", "value": "1" if exit_on_term else "0"}],
            "volumeMounts": [{"name": "out", "mountPath": "/out"}],
        },
        volumes=[host_dir(tmp_path)],
        terminationGracePeriodSeconds=30,
    )


def test_deleting_a_pod_delivers_sigterm_and_removes_it(
    core: Any, namespace: str, tmp_path: Path, wait: Wait
) -> None:
    core.create_namespaced_pod(namespace, body=_recorder("term", tmp_path, exit_on_term=True))
    wait((tmp_path / "pid").exists, timeout=60, what="the container to start")
    pid = int((tmp_path / "pid").read_text())
    started = time.monotonic()
    core.delete_namespaced_pod("term", namespace)
    wait(lambda: pod_gone(core, namespace, "term"), timeout=30, what="the pod object to go")
    assert (tmp_path / "signal").read_text() == "SIGTERM"
    # It exited on SIGTERM, so the 30 s grace period was not waited out.
    assert time.monotonic() - started < 15
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_container_ignoring_sigterm_is_killed_after_the_grace_period(
    core: Any, namespace: str, tmp_path: Path, wait: Wait
) -> None:
    core.create_namespaced_pod(namespace, body=_recorder("stubborn", tmp_path, exit_on_term=False))
    wait((tmp_path / "pid").exists, timeout=60, what="the container to start")
    pid = int((tmp_path / "pid").read_text())
    grace = 4
    started = time.monotonic()
    core.delete_namespaced_pod("stubborn", namespace, grace_period_seconds=grace)
    wait((tmp_path / "signal").exists, timeout=10, what="SIGTERM to arrive")
    os.kill(pid, 0)  # still alive after SIGTERM
    wait(lambda: pod_gone(core, namespace, "stubborn"), timeout=30, what="the pod object to go")
    elapsed = time.monotonic() - started
    assert grace - 0.5 <= elapsed < grace + 10, elapsed
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_garbage_collector_deletes_dependents_of_a_deleted_owner(
    core: Any, namespace: str, wait: Wait
) -> None:
    owner = core.create_namespaced_config_map(namespace, body={"metadata": {"name": "owner"}})
    dependent = python_pod("dependent", "import time; time.sleep(3600)")
    dependent["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    ]
    core.create_namespaced_pod(namespace, body=dependent)
    core.create_namespaced_config_map(
        namespace,
        body={
            "metadata": {
                "name": "dependent-cm",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner.metadata.uid,
                    }
                ],
            }
        },
    )
    wait(
        lambda: core.read_namespaced_pod("dependent", namespace).status.phase == "Running",
        timeout=60,
        what="the dependent pod to run",
    )
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")
    wait(lambda: pod_gone(core, namespace, "dependent"), timeout=60, what="GC of the pod")
    names = [cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items]
    assert "dependent-cm" not in names


def _status(core: Any, namespace: str, name: str) -> Any:
    statuses = core.read_namespaced_pod(name, namespace).status.container_statuses or []
    return statuses[0] if statuses else None


def test_crashing_container_restarts_with_back_off(core: Any, namespace: str, wait: Wait) -> None:
    core.create_namespaced_pod(namespace, body=python_pod("crash", "import sys; sys.exit(3)"))
    seen_backoff = wait(
        lambda: (
            (s := _status(core, namespace, "crash"))
            and s.state.waiting
            and s.state.waiting.reason == "CrashLoopBackOff"
            and s
        ),
        timeout=60,
        what="CrashLoopBackOff",
    )
    assert seen_backoff.last_state.terminated.exit_code == 3
    wait(
        lambda: (s := _status(core, namespace, "crash")) and s.restart_count >= 2,
        timeout=60,
        what="two restarts",
    )


def test_a_security_context_ours_cannot_enforce_is_named_in_a_warning_event(
    core: Any, namespace: str, wait: Wait
) -> None:
    # A real kubelet runs this as user 1000 on a read-only root; ours cannot, and says so.
    context = {"runAsUser": 1000, "readOnlyRootFilesystem": True}
    pod = python_pod(
        "confined", "import time; time.sleep(3600)", container={"securityContext": context}
    )
    core.create_namespaced_pod(namespace, body=pod)

    def warning() -> Any:
        for event in core.list_namespaced_event(namespace).items:
            if (
                event.involved_object.name == "confined"
                and event.reason == "SecurityContextNotEnforced"
            ):
                return event
        return None

    event = wait(warning, timeout=30, what="the SecurityContextNotEnforced Event")
    assert event.type == "Warning"
    assert "main: runAsUser=1000 readOnlyRootFilesystem=true" in event.message, event.message


def test_failing_liveness_probe_restarts_the_container(
    core: Any, namespace: str, wait: Wait
) -> None:
    pod = python_pod(
        "unlive",
        "import time; print('up', flush=True); time.sleep(3600)",
        container={
            "livenessProbe": {
                "tcpSocket": {"port": 9},
                "periodSeconds": 1,
                "failureThreshold": 2,
            }
        },
        terminationGracePeriodSeconds=2,
    )
    core.create_namespaced_pod(namespace, body=pod)
    status = wait(
        lambda: (s := _status(core, namespace, "unlive")) and s.restart_count >= 1 and s,
        timeout=60,
        what="a liveness restart",
    )
    assert status.last_state.terminated is not None


def test_ready_waits_for_readiness_gates(core: Any, namespace: str, wait: Wait) -> None:
    gate = "marketplace.p2p.dev/joined"
    pod = python_pod(
        "gated", "import time; time.sleep(3600)", readinessGates=[{"conditionType": gate}]
    )
    core.create_namespaced_pod(namespace, body=pod)

    def conditions() -> dict[str, str]:
        found = core.read_namespaced_pod("gated", namespace).status.conditions or []
        return {c.type: c.status for c in found}

    wait(lambda: conditions().get("ContainersReady") == "True", timeout=60, what="containers")
    time.sleep(1)
    assert conditions()["Ready"] == "False"
    core.patch_namespaced_pod_status(
        "gated",
        namespace,
        body={"status": {"conditions": [{"type": gate, "status": "True"}]}},
        _content_type="application/strategic-merge-patch+json",
    )
    wait(lambda: conditions().get("Ready") == "True", timeout=30, what="Ready after the gate")
    assert conditions()[gate] == "True"


def kubectl() -> str:
    bin_dir = subprocess.run(
        [str(ROOT / "hack" / "build-k8s.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    return str(Path(bin_dir) / "kubectl")


def test_kubectl_logs_returns_container_output(
    core: Any, namespace: str, kubeconfig: Path, wait: Wait
) -> None:
    script = "import os, time; print('hello from', os.environ['HOSTNAME']); time.sleep(3600)"
    core.create_namespaced_pod(namespace, body=python_pod("talker", script))
    wait(
        lambda: core.read_namespaced_pod("talker", namespace).status.phase == "Running",
        timeout=60,
        what="the pod to run",
    )

    def logs() -> str:
        return subprocess.run(
            [kubectl(), "--kubeconfig", str(kubeconfig), "-n", namespace, "logs", "talker"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout

    assert "hello from talker" in wait(logs, timeout=30, what="the log line")


def test_an_unmapped_image_waits_with_reason_image_not_mapped(
    core: Any, namespace: str, wait: Wait
) -> None:
    body = python_pod("unmapped", "pass")
    body["spec"]["containers"][0]["image"] = "registry.example/nginx:1.27"
    core.create_namespaced_pod(namespace, body=body)
    waiting = wait(
        lambda: (s := _status(core, namespace, "unmapped")) and s.state.waiting,
        timeout=60,
        what="the container to wait",
    )
    assert waiting.reason == "ImageNotMapped"
    assert "nginx" in waiting.message
    assert core.read_namespaced_pod("unmapped", namespace).status.phase == "Pending"


def test_host_network_pods_get_the_node_address(core: Any, namespace: str, wait: Wait) -> None:
    body = python_pod("hostnet", "import time; time.sleep(3600)", hostNetwork=True)
    core.create_namespaced_pod(namespace, body=body)
    pod = wait(
        lambda: (p := core.read_namespaced_pod("hostnet", namespace)).status.pod_ip and p,
        timeout=60,
        what="a pod IP",
    )
    assert pod.status.pod_ip == pod.status.host_ip == "127.0.0.1"


def test_exec_readiness_probe_and_pre_stop_hook_run_inside_the_container(
    core: Any, namespace: str, tmp_path: Path, wait: Wait
) -> None:
    """Both see the container's mounts: /out exists only in its mount namespace."""
    body = _recorder("hooks", tmp_path, exit_on_term=True)
    container = body["spec"]["containers"][0]
    container["readinessProbe"] = {
        "exec": {
            "command": [
                "python",
                "-c",
                "import os, sys; sys.exit(not os.path.exists('/out/ready'))",
            ]
        },
        "periodSeconds": 1,
    }
    container["lifecycle"] = {
        "preStop": {
            "exec": {"command": ["python", "-c", "open('/out/pre-stop', 'w').write('ran')"]}
        }
    }
    core.create_namespaced_pod(namespace, body=body)
    wait((tmp_path / "pid").exists, timeout=60, what="the container to start")
    time.sleep(2)
    assert not core.read_namespaced_pod("hooks", namespace).status.container_statuses[0].ready
    (tmp_path / "ready").write_text("")
    wait(
        lambda: core.read_namespaced_pod("hooks", namespace).status.container_statuses[0].ready,
        timeout=30,
        what="readiness from the exec probe",
    )
    core.delete_namespaced_pod("hooks", namespace)
    wait(lambda: pod_gone(core, namespace, "hooks"), timeout=30, what="the pod object to go")
    assert (tmp_path / "pre-stop").read_text() == "ran"
    assert (tmp_path / "signal").read_text() == "SIGTERM"


def test_init_containers_run_first_and_share_empty_dirs(
    core: Any, namespace: str, wait: Wait
) -> None:
    body = python_pod(
        "init",
        "print(open('/seed/seed').read(), flush=True); import time; time.sleep(3600)",
        container={"volumeMounts": [{"name": "work", "mountPath": "/seed"}]},
        volumes=[{"name": "work", "emptyDir": {}}],
        initContainers=[
            {
                "name": "seed",
                "image": "python:3.11-slim",
                "command": ["python", "-c", "open('/seed/seed', 'w').write('seeded')"],
                "volumeMounts": [{"name": "work", "mountPath": "/seed"}],
            }
        ],
    )
    core.create_namespaced_pod(namespace, body=body)
    pod = wait(
        lambda: (p := core.read_namespaced_pod("init", namespace)).status.phase == "Running" and p,
        timeout=60,
        what="the pod to run",
    )
    (seed,) = pod.status.init_container_statuses
    assert seed.state.terminated.exit_code == 0
    assert {c.type: c.status for c in pod.status.conditions}["Initialized"] == "True"
    wait(
        lambda: "seeded" in core.read_namespaced_pod_log("init", namespace, container="main"),
        timeout=30,
        what="the main container to read what the init container wrote",
    )


def test_a_failed_init_container_fails_a_never_restarting_pod(
    core: Any, namespace: str, wait: Wait
) -> None:
    body = python_pod(
        "badinit",
        "print('must not run')",
        restartPolicy="Never",
        initContainers=[
            {"name": "fail", "image": "python:3.11-slim", "command": ["python", "-c", "exit(4)"]}
        ],
    )
    core.create_namespaced_pod(namespace, body=body)
    pod = wait(
        lambda: (
            (p := core.read_namespaced_pod("badinit", namespace)).status.phase == "Failed" and p
        ),
        timeout=60,
        what="the pod to fail",
    )
    assert pod.status.init_container_statuses[0].state.terminated.exit_code == 4
    assert pod.status.container_statuses[0].state.waiting.reason == "Init:Error"
