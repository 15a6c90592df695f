"""The default StorageClass `local-dir` and its provisioner: one host directory per claim.

Runs with the admin credentials: a node may read the claims of its own pods
but not create PersistentVolumes. The PV controller of kube-controller-manager
binds each claim to the volume created here; `Delete` reclaim removes the
directory once the claim is gone.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from local_kubelet import atomic_dir
from local_kubelet.informer import inform
from local_kubelet.kube import JSON, Kube, KubeError

log = logging.getLogger(__name__)

CLASS_NAME = "local-dir"
PROVISIONER = "marketplace.p2p.dev/local-dir"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def storage_class() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": CLASS_NAME,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        # One node: binding at once lets the scheduler place claimants right away.
        "volumeBindingMode": "Immediate",
    }


def wants_volume(claim: JSON) -> bool:
    """An unbound claim of our class (pure)."""
    spec = claim.get("spec", {})
    return (
        spec.get("storageClassName") == CLASS_NAME
        and not spec.get("volumeName")
        and claim.get("status", {}).get("phase", "Pending") == "Pending"
        and claim["metadata"].get("deletionTimestamp") is None
    )


def volume_for(claim: JSON, base: Path) -> dict[str, Any]:
    """The PersistentVolume that satisfies a claim (pure)."""
    meta = claim["metadata"]
    spec = claim["spec"]
    safe = re.sub(r"[^a-zA-Z0-9_.-]", "_", f"{meta['namespace']}_{meta['name']}")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{meta['uid']}",
            "annotations": {PROVISIONED_BY: PROVISIONER},
        },
        "spec": {
            "capacity": {
                "storage": spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
            },
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": CLASS_NAME,
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "hostPath": {"path": str(base / f"{safe}_{meta['uid']}"), "type": "DirectoryOrCreate"},
        },
    }


def reclaimable(volume: JSON) -> bool:
    """A released volume of ours with reclaim policy Delete (pure)."""
    return bool(
        volume["metadata"].get("annotations", {}).get(PROVISIONED_BY) == PROVISIONER
        and volume.get("spec", {}).get("persistentVolumeReclaimPolicy") == "Delete"
        and volume.get("status", {}).get("phase") == "Released"
    )


class Provisioner:
    """Creates volumes for new claims and deletes released ones.

    Each claim is provisioned in its own task, as external-provisioner's workers do: one
    at a time inside the watch callback, twenty claims applied together waited on twenty
    API round trips in a row. A claim already in flight is not provisioned twice.
    """

    def __init__(self, kube: Kube, base: Path) -> None:
        self._kube = kube
        self._base = base
        self._in_flight: dict[str, asyncio.Task[None]] = {}  # claim uid -> its task

    async def ensure_class(self) -> None:
        try:
            await self._kube.request(
                "POST", "/apis/storage.k8s.io/v1/storageclasses", body=storage_class()
            )
        except KubeError as exc:
            if exc.status != 409:
                raise

    async def _on_claim(self, kind: str, claim: JSON) -> None:
        uid = claim["metadata"]["uid"]
        if kind == "DELETED" or not wants_volume(claim) or uid in self._in_flight:
            return
        task = asyncio.get_running_loop().create_task(self._provision(claim))
        self._in_flight[uid] = task
        task.add_done_callback(lambda _: self._in_flight.pop(uid, None))

    async def _provision(self, claim: JSON) -> None:
        volume = volume_for(claim, self._base)
        # World-writable, as local-path-provisioner makes them: a real kubelet applies no
        # fsGroup to a hostPath volume, so a pod running as non-root could not write it.
        atomic_dir.ensure_dir(Path(volume["spec"]["hostPath"]["path"])).chmod(0o777)
        try:
            await self._kube.request("POST", "/api/v1/persistentvolumes", body=volume)
            log.info("provisioned %s for %s", volume["metadata"]["name"], claim["metadata"]["name"])
        except KubeError as exc:
            if exc.status != 409:
                log.warning("provisioning for %s failed: %s", claim["metadata"]["name"], exc)

    async def _on_volume(self, kind: str, volume: JSON) -> None:
        if kind == "DELETED" or not reclaimable(volume):
            return
        path = Path(volume["spec"]["hostPath"]["path"])
        if path.is_relative_to(self._base):
            shutil.rmtree(path, ignore_errors=True)
        try:
            await self._kube.request(
                "DELETE", f"/api/v1/persistentvolumes/{volume['metadata']['name']}"
            )
            log.info("deleted released volume %s", volume["metadata"]["name"])
        except KubeError as exc:
            if not exc.not_found:
                log.warning("deleting %s failed: %s", volume["metadata"]["name"], exc)

    async def run(self) -> None:
        while True:
            try:
                await self.ensure_class()
                break
            except KubeError as exc:
                log.warning("storage class: %s", exc)
                await asyncio.sleep(1)
        self._base.mkdir(parents=True, exist_ok=True)
        await asyncio.gather(
            inform(self._kube, "/api/v1/persistentvolumeclaims", self._on_claim),
            inform(self._kube, "/api/v1/persistentvolumes", self._on_volume),
        )
