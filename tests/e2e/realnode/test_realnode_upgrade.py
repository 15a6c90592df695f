"""#14 item 4: an upgrade from the one-port layout rolls the fleet without downtime.

A fleet made by the operator and node image of the last commit before the two listeners
(hack/one-port.sh: built once, cached by commit), under that commit's CRDs; then today's
CRDs and operator, whose default node image differs, so every pod's template is out of
date. The operator must talk to the old pods on their one port (no private-port
annotation) while it replaces them one at a time, and load through the nodes' Services'
EndpointSlices (as kube-proxy would route it) must see no failed request.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import loadgen
import real_node
from e2e_helpers import ROOT, Kubectl, OperatorProcess, pod_readiness, wait_for
from marketplace_operator import k8s
from marketplace_operator.render import names as rnames
from real_node import Images, on_real_node
from rollout_helpers import check_pods_owned, make_fleet, pod_uids, publish_everywhere, wait_rollout

from tests.support.poll import NotYet


def apply_crds(kubectl: Kubectl, directory: Path) -> None:
    for f in sorted(directory.glob("*.yaml")):
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
        for name in kubectl("get", "-f", str(f), "-o", "name").stdout.split():
            kubectl("wait", "--for=condition=Established", name, "--timeout=60s")


def node_container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == rnames.CONTAINER]
    return dict(container)


def port_names(pod: dict[str, Any]) -> set[str]:
    return {p.get("name", "") for p in node_container(pod).get("ports") or []}


def test_an_upgrade_from_the_one_port_layout_rolls_the_fleet_without_a_failed_request(
    kube: k8s.BlockingKube,
    kubectl: Kubectl,
    kubeconfig: str,
    namespace: str,
    images: Images,
    crds: list[str],
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    old = real_node.one_port()
    old_operator = OperatorProcess(
        kubeconfig=kubeconfig, namespace=namespace, log_dir=tmp_path,
        extra=["--default-node-image", old.node], name="one-port-operator", program=old.operator,
    )  # fmt: skip
    slices = loadgen.SliceEndpoints(kubeconfig, namespace)
    apply_crds(kubectl, old.crds)
    try:
        old_operator.start()
        names = make_fleet(kube, namespace, "up", 3)
        package_id = publish_everywhere(kube, namespace, names, tmp_path, keyword="upgrade")

        def three_ready() -> list[str] | NotYet:
            ready = slices.ready_addresses()
            if len(ready) == 3:
                return ready
            return NotYet(f"ready in the slices: {ready}\n{pod_readiness(kube, namespace, names)}")

        # The old fleet serves through its Services before the upgrade starts. Waited for
        # while the old operator runs: only an operator turns a pod's joined gate back on,
        # and none runs between this stop and the new operator's start.
        wait_for(three_ready, timeout=60, what="3 ready")
    finally:
        old_operator.stop()
        apply_crds(kubectl, ROOT / "crds")
    before = {name: on_real_node(kube.get(k8s.PODS, namespace, name)) for name in names}
    for pod in before.values():
        assert node_container(pod)["image"] == old.node
        assert rnames.PRIVATE_PORT_ANNOTATION not in pod["metadata"].get("annotations", {})
        assert rnames.PRIVATE_PORT_NAME not in port_names(pod)
    uids = {name: pod["metadata"]["uid"] for name, pod in before.items()}

    def upgrade() -> dict[str, str]:
        operator_factory("--default-node-image", images.node).start()
        return wait_rollout(kube, namespace, "up", names, uids, timeout=300)

    after, took, report = loadgen.without_failures(
        slices.ready_addresses, upgrade, package_id=package_id, keyword="upgrade"
    )
    assert pod_uids(kube, namespace, names) == after
    check_pods_owned(kube, namespace, "up", names)
    for name in names:
        pod = on_real_node(kube.get(k8s.PODS, namespace, name))
        assert node_container(pod)["image"] == images.node
        assert rnames.PRIVATE_PORT_ANNOTATION in pod["metadata"]["annotations"]
        assert rnames.PRIVATE_PORT_NAME in port_names(pod)
    print(f"one-port -> two-listener rollout of 3 nodes took {took:.1f}s; {report.summary()}")
