"""The real-kubelet smoke set: a Node run by the real kubelet, containerd and runc
(hack/real-node.sh), the `make images` images as real containers, pods with their own
network namespace on a bridge, and real EndpointSlices.

`make test-realnode` (part of `make test`) brings the Node up when this machine can run
it and sets MARKETPLACE_TEST_REAL_NODE=1; when it cannot, it prints why in one line.
Each test's namespace is annotated so that the PodNodeSelector and
PodTolerationRestriction admission plugins put every pod of it on that Node, the
operator's pods included, with no change to what the operator renders.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import real_node
from e2e_helpers import Kubectl, OperatorProcess
from real_node import Images


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = [item for item in items if item.path.is_relative_to(Path(__file__).parent)]
    if not os.environ.get("MARKETPLACE_TEST_REAL_NODE"):
        skip = pytest.mark.skip(reason="real-kubelet smoke set: run `make test-realnode`")
        for item in here:
            item.add_marker(skip)
    else:
        # The first test's setup may build and import the images (minutes on a busy
        # machine; `make test-realnode` does it before pytest starts). Each test's own
        # waits have deadlines of their own (at most 240 s).
        for item in here:
            item.add_marker(pytest.mark.timeout(900))


@pytest.fixture(scope="session")
def images(kubeconfig: str) -> Images:
    return real_node.up()


@pytest.fixture
def namespace(namespace: str, kubectl: Kubectl, images: Images) -> str:
    """The e2e namespace, with every pod of it placed on the real Node."""
    real_node.place_pods(kubectl, namespace)
    return namespace


@pytest.fixture
def operator(operator_factory: Callable[..., OperatorProcess], images: Images) -> OperatorProcess:
    """The operator (a local process) making pods of the node image the real Node holds."""
    op = operator_factory("--default-node-image", images.node)
    op.start()
    return op
