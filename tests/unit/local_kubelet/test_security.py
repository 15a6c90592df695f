"""The security settings the local kubelet names as not enforced."""

from __future__ import annotations

from typing import Any

from local_kubelet import security
from local_kubelet.model import Pod


def _pod(pod_context: dict[str, Any] | None = None, **containers: dict[str, Any] | None) -> Pod:
    spec: dict[str, Any] = {
        "containers": [
            {"name": name, "image": "busybox", "securityContext": context}
            for name, context in containers.items()
        ]
    }
    if pod_context is not None:
        spec["securityContext"] = pod_context
    return Pod.model_validate({"metadata": {"name": "p", "namespace": "n"}, "spec": spec})


def test_the_operators_node_pod_is_named_with_each_restriction() -> None:
    # What the operator renders for a node (render/pod.py): all of it is ignored here.
    pod = _pod(
        {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        node={
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    )
    assert security.unenforced(pod) == (
        "the local kubelet runs containers as root host processes and does not enforce "
        "pod: runAsUser=65532 runAsGroup=65532 runAsNonRoot=true fsGroup=65532 "
        "seccompProfile=RuntimeDefault; node: runAsUser=65532 runAsNonRoot=true "
        "readOnlyRootFilesystem=true allowPrivilegeEscalation=false capabilities.drop=ALL"
    )


def test_nothing_to_say_without_restrictions() -> None:
    assert security.unenforced(_pod(main=None)) == ""
    # Settings root already has, or that restrict nothing, are not restrictions.
    relaxed = {
        "runAsUser": 0,
        "privileged": True,
        "readOnlyRootFilesystem": False,
        "allowPrivilegeEscalation": True,
        "capabilities": {"add": ["NET_ADMIN"]},
        "seccompProfile": {"type": "Unconfined"},
    }
    assert security.unenforced(_pod({"runAsNonRoot": False}, main=relaxed)) == ""


def test_each_container_is_named_apart() -> None:
    pod = _pod(a={"runAsGroup": 1000}, b={"appArmorProfile": {"type": "RuntimeDefault"}})
    assert security.unenforced(pod).endswith(
        "a: runAsGroup=1000; b: appArmorProfile=RuntimeDefault"
    )
