"""What the real-kubelet smoke set (tests/e2e/realnode) shares: the Node's name and
label, its script, and the images it holds."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import dataclass

import pytest
from e2e_helpers import ROOT, Kubectl

REAL_NODE = os.environ.get("REAL_NODE_NAME", "real-node")
LABEL = "marketplace.p2p.dev/real-kubelet"
SCRIPT = ROOT / "hack" / "real-node.sh"
# MARKETPLACE_E2E_ON_REAL_NODE=1: every e2e test's pods on the real Node (REAL_NODE=1).
ON_REAL_NODE = bool(os.environ.get("MARKETPLACE_E2E_ON_REAL_NODE"))


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


def _script(*args: str, timeout: float) -> str:
    done = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"hack/real-node.sh {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return done.stdout
