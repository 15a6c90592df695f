"""Pod spec -> process plan: env precedence, downward API, $(VAR) expansion, mounts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from local_kubelet import images, podspec
from local_kubelet.model import Pod

TABLE = images.ImageTable(images=(images.ImageRule(match="python", env={"IMAGE_ENV": "1"}),))
CTX = podspec.PodContext(
    pod_ip="127.1.0.7",
    host_ip="127.0.0.1",
    node_name="n1",
    api_host="127.0.0.1",
    api_port=6443,
    base_env={"PATH": "/venv/bin:/usr/bin"},
)


def make_pod(container: dict[str, Any], **spec: Any) -> Pod:
    return Pod.model_validate(
        {
            "metadata": {
                "name": "p",
                "namespace": "ns",
                "uid": "u-1",
                "labels": {"app": "web", "tier": "a"},
                "annotations": {"note": "x"},
            },
            "spec": {
                "nodeName": "n1",
                "serviceAccountName": "sa",
                "containers": [{"name": "c", "image": "python:3.11", **container}],
                **spec,
            },
        }
    )


def make_plan(
    pod: Pod, objects: podspec.EnvObjects | None = None, dirs: dict[str, str] | None = None
) -> podspec.ProcessPlan:
    return podspec.plan(
        pod,
        pod.spec.containers[0],
        CTX,
        table=TABLE,
        root=Path("/repo"),
        which=lambda name: f"/venv/bin/{name}",
        objects=objects or {},
        volume_dirs=dirs or {},
    )


def test_downward_api_fields_and_service_env_reach_the_process() -> None:
    fields = {
        "NAME": "metadata.name",
        "NS": "metadata.namespace",
        "UID": "metadata.uid",
        "IP": "status.podIP",
        "HOST": "status.hostIP",
        "NODE": "spec.nodeName",
        "SA": "spec.serviceAccountName",
        "APP": "metadata.labels['app']",
        "NOTE": "metadata.annotations['note']",
    }
    env = [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in fields.items()]
    plan = make_plan(make_pod({"command": ["python"], "env": env}))
    assert {k: plan.env[k] for k in fields} == {
        "NAME": "p",
        "NS": "ns",
        "UID": "u-1",
        "IP": "127.1.0.7",
        "HOST": "127.0.0.1",
        "NODE": "n1",
        "SA": "sa",
        "APP": "web",
        "NOTE": "x",
    }
    assert plan.env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert plan.env["KUBERNETES_SERVICE_PORT"] == "6443"
    assert plan.env["IMAGE_ENV"] == "1"
    assert plan.env["PATH"] == "/venv/bin:/usr/bin"


def test_all_labels_render_like_the_downward_api_file() -> None:
    env = [{"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}}]
    plan = make_plan(make_pod({"command": ["python"], "env": env}))
    assert plan.env["L"] == 'app="web"\ntier="a"'


def test_unknown_field_path_is_a_config_error() -> None:
    env = [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}}}]
    with pytest.raises(podspec.ContainerConfigError):
        make_plan(make_pod({"command": ["python"], "env": env}))


def test_var_references_expand_in_env_command_and_args() -> None:
    pod = make_pod(
        {
            "command": ["python", "--bind", "$(POD_IP)"],
            "args": ["$(PORT)", "$$(PORT)", "$(MISSING)"],
            "env": [
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "PORT", "value": "8080"},
                {"name": "URL", "value": "http://$(POD_IP):$(PORT)/"},
            ],
        }
    )
    plan = make_plan(pod)
    assert plan.argv == (
        "/venv/bin/python",
        "--bind",
        "127.1.0.7",
        "8080",
        "$(PORT)",
        "$(MISSING)",
    )
    assert plan.env["URL"] == "http://127.1.0.7:8080/"


def test_env_overrides_env_from_and_secret_refs_resolve() -> None:
    pod = make_pod(
        {
            "command": ["python"],
            "envFrom": [
                {"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                {"secretRef": {"name": "s"}},
            ],
            "env": [
                {"name": "TOKEN", "value": "explicit"},
                {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "key"}}},
                {
                    "name": "OPT",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "gone", "key": "k", "optional": True}
                    },
                },
            ],
        }
    )
    objects = {
        ("configmap", "cm"): {"A": "1"},
        ("secret", "s"): {"TOKEN": "t", "key": "k"},
        ("configmap", "gone"): None,
    }
    plan = make_plan(pod, objects)
    assert plan.env["CM_A"] == "1"
    assert plan.env["TOKEN"] == "explicit"
    assert plan.env["KEY"] == "k"
    assert "OPT" not in plan.env


def test_a_missing_required_secret_key_is_a_config_error() -> None:
    env = [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "absent"}}}]
    with pytest.raises(podspec.ContainerConfigError, match="absent"):
        make_plan(make_pod({"command": ["python"], "env": env}), {("secret", "s"): {"key": "v"}})


def test_mounts_bind_volume_dirs_at_mount_paths_with_subpaths_and_read_only() -> None:
    pod = make_pod(
        {
            "command": ["python"],
            "volumeMounts": [
                {"name": "data", "mountPath": "/var/lib/app"},
                {
                    "name": "cfg",
                    "mountPath": "/etc/app/x.conf",
                    "subPath": "x.conf",
                    "readOnly": True,
                },
            ],
        }
    )
    plan = make_plan(pod, dirs={"data": "/host/data", "cfg": "/host/cfg"})
    assert plan.mounts == (
        podspec.Mount("/host/data", "/var/lib/app", False),
        podspec.Mount("/host/cfg/x.conf", "/etc/app/x.conf", True),
    )


@pytest.mark.parametrize(
    "mount",
    [
        {"name": "nope", "mountPath": "/x"},
        {"name": "data", "mountPath": "relative"},
        {"name": "data", "mountPath": "/x", "subPath": "../escape"},
        {"name": "data", "mountPath": "/repo"},  # onto the checkout: venv and code live there
        {"name": "data", "mountPath": "/"},
        {"name": "data", "mountPath": "/usr"},
    ],
)
def test_bad_mounts_are_config_errors(mount: dict[str, str]) -> None:
    pod = make_pod({"command": ["python"], "volumeMounts": [mount]})
    with pytest.raises(podspec.ContainerConfigError):
        make_plan(pod, dirs={"data": "/host/data"})


def test_a_mount_over_a_parent_of_the_checkout_keeps_the_checkout() -> None:
    pod = make_pod({"command": ["python"], "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]})
    plan = podspec.plan(
        pod,
        pod.spec.containers[0],
        CTX,
        table=TABLE,
        root=Path("/tmp/ci/repo"),
        which=lambda name: f"/venv/bin/{name}",
        objects={},
        volume_dirs={"tmp": "/host/tmp"},
    )
    assert plan.mounts == (podspec.Mount("/host/tmp", "/tmp", False),)
    assert plan.keep == ("/tmp/ci/repo",)
