"""The pod-network set: a cluster whose local kubelets give each pod a network namespace
(POD_NETWORK=netns, hack/local_kubelet/netns.py).

`make test-netns` (part of `make test`) brings such a cluster up and sets
MARKETPLACE_TEST_NETNS=1; a machine that cannot create a network namespace fails it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("MARKETPLACE_TEST_NETNS"):
        return
    skip = pytest.mark.skip(reason="pod-network set: run `make test-netns`")
    for item in items:
        if item.path.is_relative_to(Path(__file__).parent):
            item.add_marker(skip)
