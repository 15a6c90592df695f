"""Two operator replicas with kopf peering: one acts, the other stands by and takes over."""

from __future__ import annotations

import re
from collections.abc import Callable

from e2e_helpers import OperatorProcess, mnode_body, wait_ready
from marketplace_operator import k8s

PEERINGS = k8s.Resource("kopfpeerings", "kopf.dev", "v1")
ACTED = re.compile(r'"logger": "marketplace_operator\.nodeloop", "msg": "\S+: created ')


def test_standby_replica_acts_only_after_the_active_one_dies(
    kube: k8s.BlockingKube, namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    kube.create(
        PEERINGS,
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": "marketplace-operator", "namespace": namespace},
        },
    )
    flags = ("--peering", "--peering-lifetime", "4")
    active = operator_factory(*flags, "--peering-priority", "200")
    standby = operator_factory(*flags, "--peering-priority", "100")
    active.start()
    standby.start()
    kube.create(k8s.MNODES, mnode_body("first", namespace, fleet="ha"))
    wait_ready(kube, namespace, ["first"])
    assert ACTED.search(active.logs())
    assert not ACTED.search(standby.logs()), "the standby acted while the active one lived"

    active.kill()
    kube.create(k8s.MNODES, mnode_body("second", namespace, fleet="ha"))
    wait_ready(kube, namespace, ["first", "second"], timeout=120)
    assert ACTED.search(standby.logs()), "the standby never took over"
