"""The environment of a private test cluster (`hack/cluster.sh up` in a directory of its
own): the caller's environment without its cluster settings, plus this cluster's.

A developer's shell often exports its own cluster's settings (KUBECONFIG, a dev POD_CIDR,
a node farm): inherited, they made a private cluster clash with that one or talk to it.
"""

from __future__ import annotations

import os
from pathlib import Path

CALLERS_CLUSTER = ("KUBECONFIG", "POD_CIDR", "POD_CIDR_GIVEN", "SIMULATE_NODES", "REAL_NODE", "CA")
PORTS = ("API_PORT", "ETCD_PORT", "ETCD_PEER_PORT", "KCM_PORT", "SCHEDULER_PORT", "KUBELET_PORT")


def private_cluster_env(
    state: Path, ports: dict[str, int], *, node_name: str, nodes: int = 1
) -> dict[str, str]:
    """The whole environment for `cluster.sh` of the cluster in `state`: no POD_CIDR, so
    cluster.sh derives the cluster's own from its directory; `ports` names each of
    `PORTS` (KUBELET_PORT is the first Node's; the others take the ports after it)."""
    if set(ports) != set(PORTS):
        raise ValueError(f"ports must name exactly {PORTS}")
    env = {k: v for k, v in os.environ.items() if k not in CALLERS_CLUSTER}
    env.update({name: str(port) for name, port in ports.items()})
    env.update({"CLUSTER_DIR": str(state), "NODE_NAME": node_name, "NODES": str(nodes)})
    return env
