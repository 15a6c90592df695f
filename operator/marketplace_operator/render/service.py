"""The node's Service, for clients in real clusters (nothing of ours depends on it)."""

from __future__ import annotations

from typing import Any

from marketplace_operator.model.mnode import MarketplaceNodeSpec
from marketplace_operator.render import names


def service(ref: names.NodeRef, spec: MarketplaceNodeSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": names.metadata(names.service_name(ref.name), ref),
        "spec": {
            "selector": names.node_selector(ref),
            "ports": [
                {
                    "name": names.PORT_NAME,
                    "port": spec.p2p.port,
                    "targetPort": names.PORT_NAME,
                    "protocol": "TCP",
                }
            ],
            "publishNotReadyAddresses": False,
        },
    }
