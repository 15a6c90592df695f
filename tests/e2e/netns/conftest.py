"""The pod-network set: a cluster whose local kubelets give each pod a network namespace
(POD_NETWORK=netns, the default; hack/local_kubelet/netns.py).

It runs within `make test-e2e` whenever the cluster in $KUBECONFIG (else the checkout's
own) records that it runs netns; under POD_NETWORK=loopback (set by hand, the node farm's,
or the fallback of a machine that cannot make a network namespace) it is skipped, and
the skip says why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from e2e_helpers import ROOT


def _recorded(name: str) -> str:
    """What the cluster's `hack/cluster.sh up` recorded beside its kubeconfig ("" if none)."""
    kubeconfig = Path(os.environ.get("KUBECONFIG") or ROOT / ".cluster" / "kubeconfig")
    try:
        return (kubeconfig.parent / name).read_text().strip()
    except OSError:
        return ""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    network = _recorded("pod-network")
    if network == "netns":
        return
    reason = f"the cluster runs POD_NETWORK={network or 'unknown'}, not netns"
    if why := _recorded("pod-network-fallback"):
        reason = f"NOT RUN: this machine cannot make a network namespace ({why}); {reason}"
    skip = pytest.mark.skip(reason=f"pod-network set: {reason}")
    for item in items:
        if item.path.is_relative_to(Path(__file__).parent):
            item.add_marker(skip)
