"""What a pod's security contexts ask that this kubelet cannot enforce (pure).

Containers here are host processes run as the kubelet's user (root), with the host's
root filesystem, every capability and no seccomp or LSM profile. A real kubelet
enforces these fields, so a workload that relies on them (a read-only root, a non-root
user) behaves differently here; the pod worker says so once, in a Warning Event.
"""

from __future__ import annotations

from local_kubelet.model import Pod, SecurityContext

REASON = "SecurityContextNotEnforced"


def _asks(context: SecurityContext | None) -> list[str]:
    """The restrictions `context` asks for, as `field=value`; grants (privileged, added
    capabilities) and settings that restrict nothing are left out: root has them."""
    if context is None:
        return []
    asked = []
    if context.run_as_user:
        asked.append(f"runAsUser={context.run_as_user}")
    if context.run_as_group:
        asked.append(f"runAsGroup={context.run_as_group}")
    if context.run_as_non_root:
        asked.append("runAsNonRoot=true")
    if context.fs_group:
        asked.append(f"fsGroup={context.fs_group}")
    if context.read_only_root_filesystem:
        asked.append("readOnlyRootFilesystem=true")
    if context.allow_privilege_escalation is False:
        asked.append("allowPrivilegeEscalation=false")
    dropped = (context.capabilities or {}).get("drop") or []
    if dropped:
        asked.append(f"capabilities.drop={','.join(dropped)}")
    for name, profile in (
        ("seccompProfile", context.seccomp_profile),
        ("appArmorProfile", context.app_armor_profile),
    ):
        kind = (profile or {}).get("type")
        if kind and kind != "Unconfined":
            asked.append(f"{name}={kind}")
    if context.se_linux_options:
        asked.append("seLinuxOptions")
    return asked


def unenforced(pod: Pod) -> str:
    """One line naming every restriction the pod asks for and this kubelet ignores, by
    where it is set (`pod`, or the container's name); "" when there is none."""
    parts = []
    for where, context in [
        ("pod", pod.spec.security_context),
        *((c.name, c.security_context) for c in pod.spec.init_containers + pod.spec.containers),
    ]:
        asked = _asks(context)
        if asked:
            parts.append(f"{where}: {' '.join(asked)}")
    if not parts:
        return ""
    return (
        "the local kubelet runs containers as root host processes and does not enforce "
        + "; ".join(parts)
    )
