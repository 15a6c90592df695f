"""The default StorageClass `local-dir` and its provisioner: one directory per claim, on
the claim's Node, bound to that Node by node affinity, as real local volumes are.

The class binds `WaitForFirstConsumer`: the scheduler picks the pod's Node first and
writes it on the claim (`volume.kubernetes.io/selected-node`); the provisioner of that
Node's kubelet then creates a `local` PersistentVolume under its own volumes directory
with node affinity to that Node, so a later pod of the claim can only run there. The
first kubelet (`primary`) keeps the class and also serves Nodes without a provisioner
of ours (the real-kubelet Node, on the same machine). Runs with the admin credentials:
a node may read the claims of its own pods but not create PersistentVolumes. The PV
controller of kube-controller-manager would then bind each claim to the volume created
here; the provisioner completes that binding itself (`binding`: the same writes, each
claim in its own task), because the controller binds one claim at a time in a single
worker, three writes each: at 1,000 claims on a loaded API server that was minutes of
Pending pods (issue 15). The controller finds them bound and has nothing left to write.
`Delete` reclaim removes the directory once the claim is gone, done by the provisioner
whose directory it is.

A second class, `local-tmpfs`, backs each claim with a tmpfs of exactly the claim's
requested size, mounted on the volume's directory before the pod starts (so the
pod's own mount namespace sees it): a small disk that really fills, ENOSPC and all,
without filling the machine's. The chaos suite's full data volume uses it
(docs/local-cluster.md). Its content lives in memory: `hack/cluster.sh down`
unmounts it, and a pod on such a claim after that finds an empty, lost disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_kubelet import atomic_dir
from local_kubelet.informer import inform
from local_kubelet.kube import JSON, Kube, KubeError
from local_kubelet.node import LOCAL_KUBELET_LABEL

log = logging.getLogger(__name__)

CLASS_NAME = "local-dir"
TMPFS_CLASS_NAME = "local-tmpfs"
PROVISIONER = "marketplace.p2p.dev/local-dir"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
BINDING_MODE = "WaitForFirstConsumer"
HOSTNAME_LABEL = "kubernetes.io/hostname"


def storage_class(name: str = CLASS_NAME) -> dict[str, Any]:
    default = {"storageclass.kubernetes.io/is-default-class": "true"}
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name, "annotations": default if name == CLASS_NAME else {}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        # Several Nodes: the volume must be made where the scheduler puts the pod.
        "volumeBindingMode": BINDING_MODE,
    }


def wants_volume(claim: JSON) -> bool:
    """An unbound claim of our class (pure)."""
    spec = claim.get("spec", {})
    return (
        spec.get("storageClassName") in (CLASS_NAME, TMPFS_CLASS_NAME)
        and not spec.get("volumeName")
        and claim.get("status", {}).get("phase", "Pending") == "Pending"
        and claim["metadata"].get("deletionTimestamp") is None
    )


def selected_node(claim: JSON) -> str | None:
    return (claim["metadata"].get("annotations") or {}).get(SELECTED_NODE)


@dataclass(frozen=True)
class Scope:
    """Which claims this kubelet's provisioner serves."""

    node: str
    primary: bool

    def node_for(self, claim: JSON, *, selected_is_ours: bool | None) -> str | None:
        """The Node to make the claim's volume on, if this provisioner makes it (pure).

        `selected_is_ours`: whether the selected Node runs a local kubelet (None: not
        looked up, only needed when the primary might serve it)."""
        selected = selected_node(claim)
        if selected == self.node:
            return self.node
        if not self.primary or selected is None:  # None: no pod scheduled yet
            return None
        return selected if selected_is_ours is False else None


_UNITS = {
    "": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
}  # fmt: skip
_QUANTITY = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T|)$")


def quantity_bytes(quantity: str) -> int:
    """Bytes of a whole-number storage quantity ("64Mi", "1G", "1048576") (pure)."""
    match = _QUANTITY.match(quantity.strip())
    if match is None:
        raise ValueError(f"storage quantity {quantity!r} is not a whole number of bytes")
    return int(match[1]) * _UNITS[match[2]]


def tmpfs_size(claim: JSON) -> int | None:
    """The tmpfs size in bytes a claim of the tmpfs class gets, None for other claims."""
    spec = claim.get("spec", {})
    if spec.get("storageClassName") != TMPFS_CLASS_NAME:
        return None
    return quantity_bytes(spec.get("resources", {}).get("requests", {}).get("storage", "64Mi"))


def volume_path(volume: JSON) -> Path | None:
    source = volume.get("spec", {}).get("local") or volume.get("spec", {}).get("hostPath")
    return Path(source["path"]) if source and source.get("path") else None


def volume_for(claim: JSON, base: Path, node: str) -> dict[str, Any]:
    """The PersistentVolume that satisfies a claim, on `node` (pure)."""
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
            "storageClassName": spec.get("storageClassName") or CLASS_NAME,
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "local": {"path": str(base / f"{safe}_{meta['uid']}")},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}
                            ]
                        }
                    ]
                }
            },
        },
    }


BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
MERGE = "application/merge-patch+json"


@dataclass(frozen=True)
class Binding:
    """The writes that bind a claim to the volume made for it, as kube-controller-manager's
    PV controller makes them (pure): the volume's phase, then the claim's volume name and
    annotations, then its status. Each state in between is one that controller completes
    itself, so a provisioner stopped halfway leaves nothing it cannot finish. The claim's
    uid in its patches is a precondition: a claim deleted and re-created is not touched."""

    volume_status: dict[str, Any]
    claim: dict[str, Any]
    claim_status: dict[str, Any]


def binding(claim: JSON, volume: JSON) -> Binding:
    uid = claim["metadata"]["uid"]
    spec = volume["spec"]
    return Binding(
        volume_status={"status": {"phase": "Bound"}},
        claim={
            "metadata": {
                "uid": uid,
                "annotations": {BIND_COMPLETED: "yes", BOUND_BY_CONTROLLER: "yes"},
            },
            "spec": {"volumeName": volume["metadata"]["name"]},
        },
        claim_status={
            "metadata": {"uid": uid},
            "status": {
                "phase": "Bound",
                "accessModes": spec["accessModes"],
                "capacity": spec["capacity"],
            },
        },
    )


def reclaimable(volume: JSON, base: Path) -> bool:
    """A released volume of ours with reclaim policy Delete, in `base` (pure)."""
    path = volume_path(volume)
    return bool(
        volume["metadata"].get("annotations", {}).get(PROVISIONED_BY) == PROVISIONER
        and volume.get("spec", {}).get("persistentVolumeReclaimPolicy") == "Delete"
        and volume.get("status", {}).get("phase") == "Released"
        and path is not None
        and path.is_relative_to(base)
    )


class Provisioner:
    """Creates volumes for new claims of its Node and deletes its released ones.

    Each claim is provisioned in its own task, as external-provisioner's workers do: one
    at a time inside the watch callback, twenty claims applied together waited on twenty
    API round trips in a row. A claim already in flight is not provisioned twice at once;
    an event of it meanwhile is kept (the newest) and handled when the task ends. Dropped,
    the scheduler's `selected-node` write that came while the task still looked at the
    claim without it left the claim Pending for good, with no log line: the watch does
    not send it again (2 of 10 StatefulSet claims once, after a 50-claim teardown).
    """

    def __init__(self, kube: Kube, base: Path, scope: Scope) -> None:
        self._kube = kube
        self._base = base
        self._scope = scope
        self._in_flight: dict[str, asyncio.Task[None]] = {}  # claim uid -> its task
        self._next: dict[str, JSON] = {}  # claim uid -> its newest event while in flight

    async def ensure_class(self) -> None:
        """Create the classes; one of an older cluster (bound Immediate) is replaced: the
        binding mode is immutable, and bound claims keep their volumes."""
        path = "/apis/storage.k8s.io/v1/storageclasses"
        for name in (CLASS_NAME, TMPFS_CLASS_NAME):
            have = await self._kube.get(f"{path}/{name}")
            if have is not None and have.get("volumeBindingMode") == BINDING_MODE:
                continue
            if have is not None:
                log.info("replacing StorageClass %s (binding %s)", name, BINDING_MODE)
                try:
                    await self._kube.request("DELETE", f"{path}/{name}")
                except KubeError as exc:
                    if not exc.not_found:
                        raise
            try:
                await self._kube.request("POST", path, body=storage_class(name))
            except KubeError as exc:
                if exc.status != 409:
                    raise

    async def _is_ours(self, node: str) -> bool | None:
        """Whether a Node runs a local kubelet (None: no such Node)."""
        obj = await self._kube.get(f"/api/v1/nodes/{node}")
        if obj is None:
            return None
        return (obj["metadata"].get("labels") or {}).get(LOCAL_KUBELET_LABEL) == "true"

    async def _on_claim(self, kind: str, claim: JSON) -> None:
        uid = claim["metadata"]["uid"]
        if kind == "DELETED" or not wants_volume(claim):
            self._next.pop(uid, None)
            return
        if not self._scope.primary and selected_node(claim) != self._scope.node:
            return  # another kubelet's claim
        if uid in self._in_flight:
            self._next[uid] = claim
            return
        self._start(uid, claim)

    def _start(self, uid: str, claim: JSON) -> None:
        task = asyncio.get_running_loop().create_task(self._provision(claim))
        self._in_flight[uid] = task

        def done(task: asyncio.Task[None]) -> None:
            self._in_flight.pop(uid, None)
            error = None if task.cancelled() else task.exception()
            if error is not None:
                log.warning("provisioning for %s failed", claim["metadata"]["name"], exc_info=error)
            newer = self._next.pop(uid, None)
            if newer is not None:
                self._start(uid, newer)

        task.add_done_callback(done)

    async def _provision(self, claim: JSON) -> None:
        node = self._scope.node_for(claim, selected_is_ours=None)
        selected = selected_node(claim)
        if node is None and selected is not None:  # the primary, for another Node?
            try:
                node = self._scope.node_for(claim, selected_is_ours=await self._is_ours(selected))
            except KubeError as exc:
                log.warning("looking up node %s: %s", selected, exc)
        if node is None:
            return
        volume = volume_for(claim, self._base, node)
        # World-writable, as local-path-provisioner makes them: a real kubelet applies no
        # fsGroup to a local volume, so a pod running as non-root could not write it.
        path = volume_path(volume)
        assert path is not None
        atomic_dir.ensure_dir(path).chmod(0o777)
        size = tmpfs_size(claim)
        if size is not None and not await asyncio.to_thread(os.path.ismount, path):
            try:
                await _run(
                    "mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(path)
                )
            except OSError as exc:  # no volume then: the claim stays Pending, and says why
                log.warning("tmpfs for %s: %s", claim["metadata"]["name"], exc)
                return
        try:
            await self._kube.request("POST", "/api/v1/persistentvolumes", body=volume)
            log.info(
                "provisioned %s on %s for %s", volume["metadata"]["name"], node,
                claim["metadata"]["name"],
            )  # fmt: skip
        except KubeError as exc:
            if exc.status != 409:  # 409: made before (a restart); bind it all the same
                log.warning("provisioning for %s failed: %s", claim["metadata"]["name"], exc)
                return
        await self._bind(claim, volume)

    async def _bind(self, claim: JSON, volume: JSON) -> None:
        """Bind the claim to its new volume (`binding`); on a failure the PV controller
        binds it as usual."""
        writes = binding(claim, volume)
        meta = claim["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/persistentvolumeclaims/{meta['name']}"
        try:
            await self._kube.request(
                "PATCH",
                f"/api/v1/persistentvolumes/{volume['metadata']['name']}/status",
                body=writes.volume_status,
                content_type=MERGE,
            )
            await self._kube.request("PATCH", path, body=writes.claim, content_type=MERGE)
            await self._kube.request(
                "PATCH", f"{path}/status", body=writes.claim_status, content_type=MERGE
            )
        except KubeError as exc:
            log.info("binding %s: %s (left to the PV controller)", meta["name"], exc)

    async def _on_volume(self, kind: str, volume: JSON) -> None:
        if kind == "DELETED" or not reclaimable(volume, self._base):
            return
        path = volume_path(volume)
        if path is not None:
            if await asyncio.to_thread(os.path.ismount, path):
                await _run("umount", str(path))
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
        while self._scope.primary:
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


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode:
        raise OSError(f"{' '.join(argv)}: {err.decode(errors='replace').strip()}")
