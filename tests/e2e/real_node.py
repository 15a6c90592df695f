"""What the real-kubelet smoke set (tests/e2e/realnode) shares: the Node's name and
label, its script, and the images it holds."""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import ROOT, Kubectl

REAL_NODE = os.environ.get("REAL_NODE_NAME", "real-node")
LABEL = "marketplace.p2p.dev/real-kubelet"
SCRIPT = ROOT / "hack" / "real-node.sh"
# MARKETPLACE_E2E_ON_REAL_NODE=1: every e2e test's pods on the real Node (REAL_NODE=1).
ON_REAL_NODE = bool(os.environ.get("MARKETPLACE_E2E_ON_REAL_NODE"))
BRIDGE_NET = ipaddress.ip_network("10.244.0.0/16")


@dataclass(frozen=True)
class Images:
    node: str
    operator: str


@functools.cache
def up() -> Images:
    """The real Node is up (idempotent) and holds the working tree's images."""
    _script("up", timeout=900)
    node, operator = _script("images", timeout=900).split()
    return Images(node=node, operator=operator)


@dataclass(frozen=True)
class OnePort:
    """The fleet before the two listeners (hack/one-port.sh): its node image, imported
    into the real Node, its operator program and its CRDs."""

    node: str
    operator: Path
    crds: Path


@functools.cache
def one_port() -> OnePort:
    """Built once per commit (cached), imported into the real Node (idempotent)."""
    done = subprocess.run(
        [str(ROOT / "hack" / "one-port.sh")], capture_output=True, text=True, timeout=900,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"hack/one-port.sh failed:\n{done.stderr[-4000:]}")
    node, archive, operator, crds = done.stdout.split()
    _script("import", archive, node, timeout=300)
    return OnePort(node=node, operator=Path(operator), crds=Path(crds))


def tag_image(source: str, target: str) -> None:
    """`target` names `source`'s image on the real Node: a real kubelet runs only images
    its runtime has (ours maps every tag of an image to the checkout)."""
    _script("tag", source, target, timeout=60)


def place_pods(kubectl: Kubectl, namespace: str) -> None:
    """Every pod of `namespace` on the real Node, by the PodNodeSelector and
    PodTolerationRestriction admission plugins: nothing the operator renders changes."""
    toleration = {"key": LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    kubectl(
        "annotate", "--overwrite", "namespace", namespace,
        f"scheduler.alpha.kubernetes.io/node-selector={LABEL}=true",
        f"scheduler.alpha.kubernetes.io/defaultTolerations={json.dumps([toleration])}",
    )  # fmt: skip


def on_real_node(pod: dict[str, Any] | None) -> dict[str, Any]:
    """The pod, checked to run on the real Node with a bridge address of its own."""
    assert pod is not None
    assert pod["spec"]["nodeName"] == REAL_NODE, pod["spec"].get("nodeName")
    assert ipaddress.ip_address(pod["status"]["podIP"]) in BRIDGE_NET, pod["status"]
    return pod


def _script(*args: str, timeout: float) -> str:
    done = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"hack/real-node.sh {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return done.stdout
