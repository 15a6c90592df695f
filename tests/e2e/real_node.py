"""What the real-kubelet smoke set (tests/e2e/realnode) shares: the Node's name and
label, its script, and the images it holds."""

from __future__ import annotations

import os
from dataclasses import dataclass

from e2e_helpers import ROOT

REAL_NODE = os.environ.get("REAL_NODE_NAME", "real-node")
LABEL = "marketplace.p2p.dev/real-kubelet"
SCRIPT = ROOT / "hack" / "real-node.sh"


@dataclass(frozen=True)
class Images:
    node: str
    operator: str
