"""Volumes on the local cluster: live Secret/ConfigMap files, in-cluster config and RBAC, PVCs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

pytestmark = pytest.mark.cluster

Wait = Callable[..., Any]


def pod(name: str, script: str, *, mounts: list[Any], volumes: list[Any], **spec: Any) -> Any:
    return {
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "python:3.11-slim",
                    "command": ["python", "-u", "-c", script],
                    "volumeMounts": mounts,
                }
            ],
            "volumes": volumes,
            "terminationGracePeriodSeconds": 2,
            **spec,
        },
    }


# Copies what the container sees at its mount paths to a host directory, every 100 ms.
MIRROR = """
import pathlib, shutil, time
out = pathlib.Path("/out")
while True:
    for name in ("secret", "config"):
        source = pathlib.Path("/etc/app") / name / "value"
        if source.exists():
            (out / (name + ".tmp")).write_bytes(source.read_bytes())
            (out / (name + ".tmp")).replace(out / name)
    time.sleep(0.1)
"""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_secret_and_configmap_updates_reach_the_mounted_directories(
    core: Any, namespace: str, tmp_path: Path, wait: Wait
) -> None:
    core.create_namespaced_secret(
        namespace, body={"metadata": {"name": "s"}, "data": {"value": _b64("s1")}}
    )
    core.create_namespaced_config_map(
        namespace, body={"metadata": {"name": "c"}, "data": {"value": "c1"}}
    )
    core.create_namespaced_pod(
        namespace,
        body=pod(
            "mirror",
            MIRROR,
            mounts=[
                {"name": "s", "mountPath": "/etc/app/secret", "readOnly": True},
                {"name": "c", "mountPath": "/etc/app/config"},
                {"name": "out", "mountPath": "/out"},
            ],
            volumes=[
                {"name": "s", "secret": {"secretName": "s"}},
                {"name": "c", "configMap": {"name": "c"}},
                {"name": "out", "hostPath": {"path": str(tmp_path)}},
            ],
        ),
    )

    def seen(name: str) -> str:
        path = tmp_path / name
        return path.read_text() if path.exists() else ""

    wait(lambda: seen("secret") == "s1" and seen("config") == "c1", timeout=60, what="files")
    core.patch_namespaced_secret("s", namespace, body={"data": {"value": _b64("s2")}})
    core.patch_namespaced_config_map("c", namespace, body={"data": {"value": "c2"}})
    # A real kubelet takes up to a sync period (~1 min); ours watches the objects.
    wait(lambda: seen("secret") == "s2", timeout=10, what="the updated Secret")
    wait(lambda: seen("config") == "c2", timeout=10, what="the updated ConfigMap")


IN_CLUSTER = """
import json, os, ssl, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(sa + "/token").read()
namespace = open(sa + "/namespace").read()
context = ssl.create_default_context(cafile=sa + "/ca.crt")
env = os.environ
base = "https://%s:%s" % (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"])
result = {}
for what, path in (("pods", "/api/v1/namespaces/%s/pods" % namespace),
                   ("secrets", "/api/v1/namespaces/%s/secrets" % namespace)):
    request = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            result[what] = response.status
    except urllib.error.HTTPError as exc:
        result[what] = exc.code
print(json.dumps(result))
"""


def test_in_cluster_config_works_and_rbac_denies_what_was_not_granted(
    api_client: Any, core: Any, namespace: str, wait: Wait
) -> None:
    rbac: Any = client.RbacAuthorizationV1Api(api_client)
    core.create_namespaced_service_account(namespace, body={"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(
        namespace,
        body={
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "get"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        body={
            "metadata": {"name": "reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    body = pod("client", IN_CLUSTER, mounts=[], volumes=[], restartPolicy="Never")
    body["spec"]["serviceAccountName"] = "reader"
    core.create_namespaced_pod(namespace, body=body)
    wait(
        lambda: (
            core.read_namespaced_pod("client", namespace).status.phase in ("Succeeded", "Failed")
        ),
        timeout=60,
        what="the client pod to finish",
    )
    output = core.read_namespaced_pod_log("client", namespace)
    assert core.read_namespaced_pod("client", namespace).status.phase == "Succeeded", output
    assert json.loads(output.strip().splitlines()[-1]) == {"pods": 200, "secrets": 403}


def logs(core: Any, namespace: str, name: str) -> str:
    """The pod's log so far; empty while its container has not started."""
    try:
        return str(core.read_namespaced_pod_log(name, namespace))
    except client.ApiException:
        return ""


# Counts its starts in the claim's directory; crashes on the first two.
COUNTER = """
import pathlib, sys, time
counter = pathlib.Path("/data/starts")
starts = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(starts))
print("start", starts, flush=True)
if starts < 3:
    sys.exit(1)
time.sleep(3600)
"""


def test_claim_data_survives_container_restarts_and_pod_replacement(
    core: Any, namespace: str, wait: Wait
) -> None:
    core.create_namespaced_persistent_volume_claim(
        namespace,
        body={
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    mounts = [{"name": "data", "mountPath": "/data"}]
    core.create_namespaced_pod(
        namespace, body=pod("first", COUNTER, mounts=mounts, volumes=volumes)
    )

    def restarts(name: str) -> int:
        statuses = core.read_namespaced_pod(name, namespace).status.container_statuses or []
        running = statuses and statuses[0].state.running
        return statuses[0].restart_count if running else -1

    wait(
        lambda: "start 3" in logs(core, namespace, "first"),
        timeout=90,
        what="the third run of the first pod",
    )
    assert restarts("first") == 2
    claim = core.read_namespaced_persistent_volume_claim("data", namespace)
    assert claim.status.phase == "Bound"
    assert claim.spec.storage_class_name == "local-dir"
    core.delete_namespaced_pod("first", namespace, grace_period_seconds=0)
    core.create_namespaced_pod(
        namespace, body=pod("second", COUNTER, mounts=mounts, volumes=volumes)
    )
    wait(lambda: restarts("second") == 0, timeout=60, what="the second pod to run")
    wait(
        lambda: "start 4" in logs(core, namespace, "second"),
        timeout=30,
        what="the second pod to count on from the first's data",
    )
