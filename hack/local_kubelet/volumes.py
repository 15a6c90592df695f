"""Materialise a pod's volumes as host directories and keep them current.

Secret, ConfigMap, downward-API and projected volumes (including the bound
service-account token) are written with atomic_dir, so directory mounts see
updates; emptyDir is a plain directory; a PersistentVolumeClaim resolves to
the hostPath (or local path) of its bound PersistentVolume.

Secret and ConfigMap contents come from the kubelet's watches (ObjectCache),
and a claim is resolved once per pod, so a pod sync (one per status patch of
the pod) reads nothing from the API server.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from local_kubelet import atomic_dir, projection
from local_kubelet.kube import Kube, KubeError
from local_kubelet.model import DownwardApiFile, Pod, Volume
from local_kubelet.objects import ObjectCache
from local_kubelet.podspec import PodContext, field_value


class VolumeError(RuntimeError):
    """A volume cannot be set up yet (missing object, unbound claim, ...)."""


@dataclass
class _Token:
    content: bytes
    refresh_at: datetime


@dataclass
class PodVolumes:
    """The host directories of one pod's volumes, and its cached tokens."""

    root: Path
    dirs: dict[str, str] = field(default_factory=dict)
    tokens: dict[tuple[str, str, int], _Token] = field(default_factory=dict)
    # Claim name -> host path, once Bound. Final for the pod's life: the claim
    # cannot be replaced under it (pvc-protection holds it while the pod
    # exists), and its PersistentVolume's path is immutable.
    claims: dict[str, str] = field(default_factory=dict)


def referenced_objects(pod: Pod) -> set[tuple[str, str]]:
    """(kind, name) of every Secret and ConfigMap the pod's volumes show."""
    refs: set[tuple[str, str]] = set()
    for volume in pod.spec.volumes:
        if volume.secret:
            refs.add(("secret", volume.secret.secret_name))
        if volume.config_map:
            refs.add(("configmap", volume.config_map.name))
        for source in volume.projected.sources if volume.projected else []:
            if source.secret:
                refs.add(("secret", source.secret.name))
            if source.config_map:
                refs.add(("configmap", source.config_map.name))
    return refs


def object_path(namespace: str, kind: str, name: str) -> str:
    plural = "secrets" if kind == "secret" else "configmaps"
    return f"/api/v1/namespaces/{namespace}/{plural}/{name}"


class VolumeManager:
    """Sets up, refreshes and removes pods' volume directories."""

    def __init__(self, kube: Kube, objects: ObjectCache, state_dir: Path) -> None:
        self._kube = kube
        self._objects = objects
        self._state_dir = state_dir

    def pod_dir(self, uid: str) -> Path:
        return self._state_dir / "pods" / uid

    async def _data(self, pod: Pod, kind: str, name: str, optional: bool) -> dict[str, bytes]:
        obj = await self._objects.get((pod.metadata.namespace, kind, name))
        if obj is None:
            if optional:
                return {}
            raise VolumeError(f'{kind} "{name}" not found')
        return projection.secret_data(obj) if kind == "secret" else projection.configmap_data(obj)

    def _downward(
        self, pod: Pod, ctx: PodContext, items: list[DownwardApiFile], mode: int | None
    ) -> dict[str, tuple[bytes, int]]:
        values: dict[str, str] = {}
        for item in items:
            if item.field_ref:
                path = item.field_ref.field_path
                values[path] = field_value(pod, ctx, path)
        return projection.downward_files(items, mode, values)

    async def _token(
        self, pod: Pod, volumes: PodVolumes, audience: str, expiration: int, now: datetime
    ) -> bytes:
        key = (pod.spec.service_account_name, audience, expiration)
        cached = volumes.tokens.get(key)
        if cached is not None and now < cached.refresh_at:
            return cached.content
        body: dict[str, Any] = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": expiration,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod.metadata.name,
                    "uid": pod.metadata.uid,
                },
            },
        }
        path = (
            f"/api/v1/namespaces/{pod.metadata.namespace}/serviceaccounts/"
            f"{pod.spec.service_account_name}/token"
        )
        try:
            answer = await self._kube.request("POST", path, body=body)
        except KubeError as exc:
            raise VolumeError(f"service account token: {exc}") from exc
        token = str(answer["status"]["token"]).encode()
        # Refresh at 80% of the requested lifetime, as the kubelet does.
        volumes.tokens[key] = _Token(token, now + timedelta(seconds=expiration * 0.8))
        return token

    async def _files(
        self, pod: Pod, ctx: PodContext, volume: Volume, volumes: PodVolumes, now: datetime
    ) -> dict[str, tuple[bytes, int]] | None:
        """The files of a file-backed volume; None for other kinds."""
        if volume.secret:
            s = volume.secret
            data = await self._data(pod, "secret", s.secret_name, s.optional)
            return projection.key_files(data, s.items, s.default_mode, optional=s.optional)
        if volume.config_map:
            c = volume.config_map
            data = await self._data(pod, "configmap", c.name, c.optional)
            return projection.key_files(data, c.items, c.default_mode, optional=c.optional)
        if volume.downward_api:
            d = volume.downward_api
            return self._downward(pod, ctx, d.items, d.default_mode)
        if volume.projected is None:
            return None
        mode = volume.projected.default_mode
        parts: list[dict[str, tuple[bytes, int]]] = []
        for source in volume.projected.sources:
            if source.secret or source.config_map:
                ref = source.secret or source.config_map
                assert ref is not None
                kind = "secret" if source.secret else "configmap"
                data = await self._data(pod, kind, ref.name, ref.optional)
                parts.append(projection.key_files(data, ref.items, mode, optional=ref.optional))
            elif source.downward_api:
                parts.append(self._downward(pod, ctx, source.downward_api.items, mode))
            elif source.service_account_token:
                t = source.service_account_token
                token = await self._token(pod, volumes, t.audience, t.expiration_seconds, now)
                parts.append({t.path: (token, 0o600 if mode is None else mode)})
        return projection.merge(*parts)

    async def _claim_dir(self, pod: Pod, volumes: PodVolumes, claim: str) -> str:
        known = volumes.claims.get(claim)
        if known is not None:
            return known
        ns = pod.metadata.namespace
        pvc = await self._kube.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}")
        if pvc is None:
            raise VolumeError(f'persistentvolumeclaim "{claim}" not found')
        volume_name = pvc.get("spec", {}).get("volumeName")
        if not volume_name or pvc.get("status", {}).get("phase") != "Bound":
            raise VolumeError(f'persistentvolumeclaim "{claim}" is not bound')
        pv = await self._kube.get(f"/api/v1/persistentvolumes/{volume_name}")
        if pv is None:
            raise VolumeError(f'persistentvolume "{volume_name}" not found')
        source = pv["spec"].get("hostPath") or pv["spec"].get("local")
        if not source:
            raise VolumeError(f'persistentvolume "{volume_name}" has no hostPath or local path')
        path = str(atomic_dir.ensure_dir(Path(source["path"])))
        volumes.claims[claim] = path
        return path

    async def sync(
        self, pod: Pod, ctx: PodContext, volumes: PodVolumes, now: datetime | None = None
    ) -> bool:
        """Create every volume and bring file-backed ones up to date; True if a file changed."""
        moment = now or datetime.now(UTC)
        changed = False
        for volume in pod.spec.volumes:
            target = volumes.root / "volumes" / volume.name
            files = await self._files(pod, ctx, volume, volumes, moment)
            if files is not None:
                try:
                    changed |= atomic_dir.write(target, files)
                except projection.MissingKeyError as exc:
                    raise VolumeError(f"volume {volume.name}: key {exc} not found") from exc
                volumes.dirs[volume.name] = str(target)
            elif volume.persistent_volume_claim:
                claim = volume.persistent_volume_claim.claim_name
                volumes.dirs[volume.name] = await self._claim_dir(pod, volumes, claim)
            elif volume.host_path:
                path = Path(volume.host_path.path)
                if volume.host_path.type in ("DirectoryOrCreate", ""):
                    atomic_dir.ensure_dir(path)
                volumes.dirs[volume.name] = str(path)
            else:
                # emptyDir, and any other kind, as a directory that lives as long as the pod.
                atomic_dir.ensure_dir(target)
                volumes.dirs[volume.name] = str(target)
        return changed

    def remove(self, uid: str) -> None:
        """Delete the pod's own directories (never a claim's or a hostPath's data)."""
        shutil.rmtree(self.pod_dir(uid) / "volumes", ignore_errors=True)
