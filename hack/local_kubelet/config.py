"""The kubelet's settings, from `LOCAL_KUBELET_*` environment variables (set by cluster.sh)."""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: images.yaml's relative paths and the virtualenv live there."""


class Settings(BaseSettings):
    """Everything the kubelet needs to know that the API does not tell it."""

    model_config = SettingsConfigDict(env_prefix="LOCAL_KUBELET_", frozen=True)

    node_name: str = "local-node"
    # The Node's `topology.kubernetes.io/zone` label; each local Node is its own zone.
    zone: str = ""
    kubeconfig: Path
    # The provisioner creates PersistentVolumes, which a node may not: it uses these.
    admin_kubeconfig: Path
    state_dir: Path
    volumes_dir: Path
    pid_dir: Path
    # This Node's own range of pod addresses: its slice of the cluster's POD_CIDR.
    pod_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("127.1.0.0/16")
    host_ip: str = "127.0.0.1"
    # `loopback`: pods share the host's network, each with its own loopback address.
    # `netns`: a network namespace per pod on the cluster's CNI bridge (`netns`).
    pod_network: Literal["loopback", "netns"] = "loopback"
    # netns: the whole cluster's pod range (every pod's prefix), the bridge all local
    # Nodes share, and the prefix of this cluster's namespace names.
    cluster_pod_cidr: ipaddress.IPv4Network | None = None
    bridge: str = "mf-pods"
    netns_prefix: str = "mf"
    # The API server's Service range (--service-cluster-ip-range). Under netns pods reach
    # ClusterIPs through the first Node's Service rules (proxy.py), the API server at the
    # first address, port 443, as a real kubelet tells them.
    service_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.96.0.0/12")
    port: int = 10250
    tls_cert: Path
    tls_key: Path
    client_ca: Path
    images_file: Path = Path(__file__).with_name("images.yaml")
    root: Path = ROOT
    venv_bin: Path = ROOT / ".venv" / "bin"
    initial_backoff_seconds: float = Field(default=10.0, gt=0)
    max_backoff_seconds: float = Field(default=300.0, gt=0)
    lease_seconds: int = 40
    heartbeat_seconds: float = 10.0
    # Watches bring Secret/ConfigMap changes at once; the resync is a safety net.
    resync_seconds: float = 30.0
    max_pods: int = 110
    # Containers run this much nicer than the control plane (their session's autogroup
    # too): on one machine it stands in for the control-plane nodes of a real cluster,
    # which pods starting in bulk never starve.
    container_nice: int = Field(default=10, ge=0, le=19)
    # Serve marketplace-node containers from the in-process node farm (`farm`) instead of
    # processes: a thousand simulated nodes on one machine (the scale benchmark).
    simulate_nodes: bool = False
    # Where the farm records what its nodes applied; one file for every kubelet of the
    # cluster (short O_APPEND lines). Default: the state dir's farm-events.jsonl.
    farm_events: Path | None = None
    # The cluster's first kubelet: it keeps the StorageClass and provisions volumes for
    # Nodes that run no provisioner of ours (the real-kubelet Node).
    primary: bool = True
    # The Node's capacity; default: this machine's. Nothing enforces it (no
    # cgroups), so a larger figure only lets the scheduler place more pods.
    cpu: str | None = None
    memory: str | None = None

    @property
    def cpu_capacity(self) -> str:
        return self.cpu or str(os.cpu_count() or 1)

    @property
    def farm_events_file(self) -> Path:
        return self.farm_events or self.state_dir / "farm-events.jsonl"

    @property
    def initial_backoff(self) -> timedelta:
        return timedelta(seconds=self.initial_backoff_seconds)

    @property
    def max_backoff(self) -> timedelta:
        return timedelta(seconds=self.max_backoff_seconds)
