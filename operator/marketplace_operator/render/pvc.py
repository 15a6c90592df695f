"""The node's data PersistentVolumeClaim."""

from __future__ import annotations

from typing import Any

from marketplace_operator.model.mnode import MarketplaceNodeSpec
from marketplace_operator.render import names


def data_pvc(ref: names.NodeRef, spec: MarketplaceNodeSpec) -> dict[str, Any]:
    pvc_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": str(spec.storage.size)}},
    }
    if spec.storage.storage_class_name:
        pvc_spec["storageClassName"] = spec.storage.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": names.metadata(names.data_pvc_name(ref.name), ref),
        "spec": pvc_spec,
    }
