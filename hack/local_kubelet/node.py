"""Register this kubelet's Node and keep it alive: status heartbeats and the node Lease."""

from __future__ import annotations

import asyncio
import logging
import platform
from datetime import UTC, datetime
from typing import Any

from local_kubelet.config import Settings
from local_kubelet.kube import STRATEGIC, Kube, KubeError
from local_kubelet.status import rfc3339

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.37.2-local"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
REGION = "local"
LOCAL_KUBELET_LABEL = "marketplace.p2p.dev/local-kubelet"
"""On every Node of ours: the provisioner tells them from Nodes it must serve for."""


def _micro(moment: datetime) -> str:
    """Lease times are MicroTime: RFC 3339 with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def memory_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 1 << 30


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def node_labels(settings: Settings) -> dict[str, str]:
    """Labels a kubelet may set on its own Node (NodeRestriction allows these)."""
    labels = {
        "kubernetes.io/hostname": settings.node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": _arch(),
        LOCAL_KUBELET_LABEL: "true",
    }
    if settings.zone:
        labels |= {ZONE_LABEL: settings.zone, REGION_LABEL: REGION}
    return labels


def node_object(settings: Settings) -> dict[str, Any]:
    """The Node as first registered: its labels and its own pod address range."""
    cidr = str(settings.pod_cidr)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": settings.node_name, "labels": node_labels(settings)},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
    }


def node_status(settings: Settings, now: datetime, since: datetime) -> dict[str, Any]:
    """Capacity, addresses, the kubelet endpoint and conditions of a healthy node."""
    capacity = {
        "cpu": settings.cpu_capacity,
        "memory": settings.memory or f"{memory_bytes() // 1024}Ki",
        "pods": str(settings.max_pods),
        "ephemeral-storage": "100Gi",
    }
    healthy = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ("Ready", "True", "KubeletReady"),
    ]
    return {
        "capacity": capacity,
        "allocatable": capacity,
        "addresses": [
            {"type": "InternalIP", "address": settings.host_ip},
            {"type": "Hostname", "address": settings.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": settings.port}},
        "nodeInfo": {
            "machineID": "local",
            "systemUUID": "local",
            "bootID": "local",
            "kernelVersion": platform.release(),
            "osImage": "local processes (marketplace-fleet local kubelet)",
            "containerRuntimeVersion": "local://1",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": _arch(),
        },
        "conditions": [
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": "local kubelet is posting status",
                "lastHeartbeatTime": rfc3339(now),
                "lastTransitionTime": rfc3339(since),
            }
            for kind, value, reason in healthy
        ],
    }


class NodeAgent:
    """Creates the Node once, then renews its Lease and refreshes its status."""

    def __init__(self, kube: Kube, settings: Settings) -> None:
        self._kube = kube
        self._settings = settings
        self._since = datetime.now(UTC)

    @property
    def _path(self) -> str:
        return f"/api/v1/nodes/{self._settings.node_name}"

    async def register(self) -> None:
        try:
            await self._kube.request("POST", "/api/v1/nodes", body=node_object(self._settings))
            log.info("registered node %s", self._settings.node_name)
        except KubeError as exc:
            if exc.status != 409:
                raise
            # Registered before: bring its labels up to date (a zone given since), as a
            # kubelet reconciles its default labels.
            patch = {"metadata": {"labels": node_labels(self._settings)}}
            await self._kube.request("PATCH", self._path, body=patch, content_type=STRATEGIC)
        await self.post_status()

    async def post_status(self) -> None:
        body = {"status": node_status(self._settings, datetime.now(UTC), self._since)}
        await self._kube.request("PATCH", self._path + "/status", body=body, content_type=STRATEGIC)

    async def renew_lease(self) -> None:
        name = self._settings.node_name
        base = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        now = _micro(datetime.now(UTC))
        lease = await self._kube.get(f"{base}/{name}")
        if lease is None:
            node = await self._kube.get(self._path)
            owner = (
                [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}]
                if node
                else []
            )
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": owner,
                },
                "spec": {
                    "holderIdentity": name,
                    "leaseDurationSeconds": self._settings.lease_seconds,
                    "renewTime": now,
                },
            }
            await self._kube.request("POST", base, body=body)
            return
        lease["spec"]["renewTime"] = now
        lease["spec"]["holderIdentity"] = name
        await self._kube.request("PUT", f"{base}/{name}", body=lease)

    async def run(self) -> None:
        """Register, then heartbeat forever (errors are logged and retried)."""
        while True:
            try:
                await self.register()
                break
            except KubeError as exc:
                log.warning("node registration failed: %s", exc)
                await asyncio.sleep(1)
        beats = 0
        while True:
            try:
                await self.renew_lease()
                # Node status every sixth beat (a minute by default), as a kubelet does.
                if beats % 6 == 0:
                    await self.post_status()
            except KubeError as exc:
                log.warning("node heartbeat failed: %s", exc)
            beats += 1
            await asyncio.sleep(self._settings.heartbeat_seconds)
