"""Turn a pod's container spec into a process plan: argv, environment, mounts (pure).

Everything the plan needs from the API (Secret and ConfigMap data for `env`
and `envFrom`, the host directories of the pod's volumes) is gathered by the
caller and passed in, so this module does no I/O and is table-tested.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from local_kubelet import images
from local_kubelet.model import Container, EnvVarSource, Pod


class ContainerConfigError(ValueError):
    """The container cannot start as specified (reason `CreateContainerConfigError`)."""


@dataclass(frozen=True)
class Mount:
    """A bind mount of a host path at a path inside the container."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class ProcessPlan:
    """How to run one container as a local process."""

    container: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    mounts: tuple[Mount, ...] = ()
    working_dir: str | None = None
    keep: tuple[str, ...] = ()  # host paths that stay visible under any mount (the checkout)


@dataclass(frozen=True)
class PodContext:
    """Facts about the pod's placement that the spec does not hold."""

    pod_ip: str
    host_ip: str
    node_name: str
    api_host: str
    api_port: int
    base_env: Mapping[str, str] = field(default_factory=dict)
    node_cpu: str = "1"
    node_memory: str = "1Gi"


# (kind, name) -> decoded data, kind in {"secret", "configmap"}; None: it does not exist.
EnvObjects = Mapping[tuple[str, str], Mapping[str, str] | None]

_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_LABEL_PATH = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: unknown references stay, `$$` escapes."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return env.get(name, match.group(0))

    return _REF.sub(sub, text)


def field_value(pod: Pod, ctx: PodContext, field_path: str) -> str:
    """The value of a downward-API `fieldRef` path."""
    meta = pod.metadata
    simple = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid,
        "spec.nodeName": pod.spec.node_name or ctx.node_name,
        "spec.serviceAccountName": pod.spec.service_account_name,
        "status.podIP": ctx.pod_ip,
        "status.podIPs": ctx.pod_ip,
        "status.hostIP": ctx.host_ip,
        "status.hostIPs": ctx.host_ip,
    }
    if field_path in simple:
        return simple[field_path]
    if field_path in ("metadata.labels", "metadata.annotations"):
        items = meta.labels if field_path.endswith("labels") else meta.annotations
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    match = _LABEL_PATH.match(field_path)
    if match:
        items = meta.labels if match.group(1) == "labels" else meta.annotations
        return items.get(match.group(2), "")
    raise ContainerConfigError(f"unsupported fieldRef path {field_path!r}")


def resource_value(container: Container, ctx: PodContext, resource: str) -> str:
    """A downward-API `resourceFieldRef`: the limit, or the node's capacity if unset."""
    kind, _, name = resource.partition(".")
    source = container.resources.limits if kind == "limits" else container.resources.requests
    if name in source:
        return str(source[name])
    if kind == "limits":
        return {"cpu": ctx.node_cpu, "memory": ctx.node_memory}.get(name, "0")
    return "0"


def _ref_value(source: EnvVarSource, objects: EnvObjects) -> str | None:
    ref, kind = (
        (source.secret_key_ref, "secret")
        if source.secret_key_ref
        else (source.config_map_key_ref, "configmap")
    )
    if ref is None:
        raise ContainerConfigError("env valueFrom has no supported source")
    data = objects.get((kind, ref.name))
    if data is None or ref.key not in data:
        if ref.optional:
            return None
        raise ContainerConfigError(f"{kind} {ref.name!r} key {ref.key!r} not found")
    return data[ref.key]


def container_env(
    pod: Pod, container: Container, ctx: PodContext, objects: EnvObjects
) -> dict[str, str]:
    """The container's environment, in Kubernetes' order of precedence."""
    env: dict[str, str] = dict(ctx.base_env)
    env.update(
        {
            "HOSTNAME": pod.spec.hostname or pod.metadata.name,
            "KUBERNETES_SERVICE_HOST": ctx.api_host,
            "KUBERNETES_SERVICE_PORT": str(ctx.api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(ctx.api_port),
            "KUBERNETES_PORT": f"tcp://{ctx.api_host}:{ctx.api_port}",
        }
    )
    for source in container.env_from:
        ref, kind = (
            (source.secret_ref, "secret")
            if source.secret_ref
            else (source.config_map_ref, "configmap")
        )
        if ref is None:
            continue
        data = objects.get((kind, ref.name))
        if data is None:
            if ref.optional:
                continue
            raise ContainerConfigError(f"{kind} {ref.name!r} not found")
        env.update({source.prefix + key: value for key, value in data.items()})
    for var in container.env:
        if var.value_from is None:
            env[var.name] = expand(var.value or "", env)
            continue
        value_from = var.value_from
        if value_from.field_ref is not None:
            env[var.name] = field_value(pod, ctx, value_from.field_ref.field_path)
        elif value_from.resource_field_ref is not None:
            env[var.name] = resource_value(container, ctx, value_from.resource_field_ref.resource)
        else:
            value = _ref_value(value_from, objects)
            if value is not None:
                env[var.name] = value
    return env


# The rest of a container's filesystem is the host's: a mount over one of these
# (or onto the checkout itself, where the virtualenv lives) would hide what it
# runs on. A mount over a parent of the checkout (an emptyDir at /tmp while the
# checkout is /tmp/ci/repo) is fine: `enter` binds the checkout back inside it.
SYSTEM_DIRS = ("/", "/bin", "/sbin", "/lib", "/lib64", "/usr", "/etc", "/proc", "/sys", "/dev")


def _hides(mount_path: str, keep: Path) -> bool:
    path = PurePosixPath(mount_path)
    return str(path) in SYSTEM_DIRS or PurePosixPath(keep) == path


def container_mounts(
    container: Container, volume_dirs: Mapping[str, str], *, keep: Path = Path("/")
) -> tuple[Mount, ...]:
    """Bind mounts for the container's volumeMounts, from volume name to host dir.

    Nothing may be mounted onto `keep` (the checkout) or a system directory.
    """
    mounts: list[Mount] = []
    for vm in container.volume_mounts:
        if vm.name not in volume_dirs:
            raise ContainerConfigError(f"volumeMount {vm.name!r} names no volume of the pod")
        if not PurePosixPath(vm.mount_path).is_absolute():
            raise ContainerConfigError(f"mountPath {vm.mount_path!r} is not absolute")
        if _hides(vm.mount_path, keep):
            raise ContainerConfigError(
                f"mountPath {vm.mount_path!r} would hide {keep} or a system directory, which "
                "the local kubelet's containers share with the host; choose another path"
            )
        source = Path(volume_dirs[vm.name])
        if vm.sub_path:
            sub = PurePosixPath(vm.sub_path)
            if sub.is_absolute() or ".." in sub.parts:
                raise ContainerConfigError(f"subPath {vm.sub_path!r} escapes the volume")
            source = source / sub
        mounts.append(Mount(str(source), vm.mount_path, vm.read_only))
    return tuple(mounts)


def plan(
    pod: Pod,
    container: Container,
    ctx: PodContext,
    *,
    table: images.ImageTable,
    root: Path,
    which: Callable[[str], str | None],
    objects: EnvObjects,
    volume_dirs: Mapping[str, str],
) -> ProcessPlan:
    """The full process plan of one container.

    Raises images.ImageNotMappedError or ContainerConfigError.
    """
    rule = images.find_rule(table, container.image)
    env = {**rule.env, **container_env(pod, container, ctx, objects)}
    command = [expand(word, env) for word in container.command]
    args = [expand(word, env) for word in container.args]
    argv = images.resolve_argv(rule, command=command, args=args, root=root, which=which)
    return ProcessPlan(
        container=container.name,
        argv=tuple(argv),
        env=env,
        mounts=container_mounts(container, volume_dirs, keep=root),
        working_dir=container.working_dir or None,
        keep=(str(root),),
    )
