"""A new default node image in the operator moves a 10-node fleet, one node at a time."""

from __future__ import annotations

import time
from collections.abc import Callable

import loadgen
import real_node
from e2e_helpers import OperatorProcess
from marketplace_operator import k8s
from rollout_helpers import check_pods_owned, make_fleet, pod_uids, wait_rollout

SIZE = 10
NEW_IMAGE = "ghcr.io/marketplace-fleet/node:0.2.0-rollout"


def test_default_image_change_rolls_a_ten_node_fleet(
    kube: k8s.BlockingKube,
    kubeconfig: str,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    first = operator_factory()
    first.start()
    names = make_fleet(kube, namespace, "ten", SIZE, ready_timeout=300)
    before = pod_uids(kube, namespace, names)
    old_images = {
        (kube.get(k8s.PODS, namespace, n) or {})["spec"]["containers"][0]["image"] for n in names
    }
    assert NEW_IMAGE not in old_images
    if real_node.ON_REAL_NODE:
        real_node.tag_image(real_node.up().node, NEW_IMAGE)

    with loadgen.FleetWatch(kubeconfig, namespace, "ten", names) as watch:
        first.stop()
        upgraded = operator_factory("--default-node-image", NEW_IMAGE)
        started = time.monotonic()
        upgraded.start()
        wait_rollout(kube, namespace, "ten", names, before, timeout=420)
        took = time.monotonic() - started

    for name in names:
        pod = kube.get(k8s.PODS, namespace, name)
        assert pod is not None
        assert pod["spec"]["containers"][0]["image"] == NEW_IMAGE
    worst = watch.most_unavailable(since=started)
    assert len(worst.unavailable) <= 1, worst
    assert all(len(watch.uids_seen[n]) == 2 for n in names), watch.uids_seen
    check_pods_owned(kube, namespace, "ten", names)
    print(f"image rollout of {SIZE} nodes took {took:.1f}s")
