"""The node's Pod, and the hash of the inputs that shape it.

The hash covers the *inputs* (image, p2p settings, resources, storage class, drain
timeout, a restart request) rather than the rendered object, so a new operator
version that renders the pod differently does not restart the fleet: only a change
a user made does. The rollout planner imports `template_hash` to see who is stale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marketplace_operator.model.common import rfc3339
from marketplace_operator.model.fleet import RESTARTED_AT_ANNOTATION
from marketplace_operator.model.mnode import MarketplaceNodeSpec
from marketplace_operator.render import names

RUN_AS = 65532
# SIGTERM → the node drains itself within drainTimeout; give it this much more to exit.
GRACE_MARGIN_SECONDS = 10


@dataclass(frozen=True)
class PodInputs:
    """Everything the pod is a function of. Changing any field means a new pod."""

    image: str
    spec: MarketplaceNodeSpec
    restart_token: str = ""  # e.g. the marketplace.p2p.dev/restartedAt annotation

    @classmethod
    def resolve(
        cls, spec: MarketplaceNodeSpec, *, default_image: str, restart_token: str = ""
    ) -> PodInputs:
        """The inputs of a node with `spec`: its image, or the operator's default."""
        return cls(image=spec.image or default_image, spec=spec, restart_token=restart_token)

    def hash_material(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "image": self.image,
            "fleet": spec.fleet,
            "port": spec.p2p.port,
            "maxPeers": spec.p2p.max_peers,
            "bootstrapPeers": list(spec.p2p.bootstrap_peers),
            "resources": spec.resources.model_dump(mode="json"),
            "storageClassName": spec.storage.storage_class_name,
            "drainTimeoutSeconds": spec.drain_timeout_seconds,
            "restart": self.restart_token,
        }


RESTART_TOKEN_MAX = 64  # the fleet status records the token with this bound


def restart_token(mnode: Mapping[str, Any]) -> str:
    """The restart request of a MarketplaceNode body ("" when none was made): the node's
    reconcile and the fleet rollout must read the same token, or their hashes differ."""
    notes = (mnode.get("metadata") or {}).get("annotations") or {}
    return str(notes.get(RESTARTED_AT_ANNOTATION, ""))[:RESTART_TOKEN_MAX]


def inputs_of(mnode: Mapping[str, Any], *, default_image: str) -> PodInputs:
    """Everything a MarketplaceNode's pod is a function of: spec, resolved image, restart
    token."""
    spec = MarketplaceNodeSpec.model_validate(mnode.get("spec") or {})
    return PodInputs.resolve(spec, default_image=default_image, restart_token=restart_token(mnode))


def template_hash(inputs: PodInputs) -> str:
    """A short stable digest of `inputs` (canonical JSON, SHA-256, 16 hex digits)."""
    material = json.dumps(inputs.hash_material(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _env(spec: MarketplaceNodeSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {
            "name": "MARKETPLACE_NODE_HOST",
            "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
        },
        {"name": "MARKETPLACE_NODE_PORT", "value": str(spec.p2p.port)},
        {"name": "MARKETPLACE_NODE_DATA_DIR", "value": names.DATA_DIR},
        {
            "name": "MARKETPLACE_NODE_IDENTITY_FILE",
            "value": f"{names.IDENTITY_DIR}/{names.IDENTITY_KEY}",
        },
        {
            "name": "MARKETPLACE_NODE_ADMIN_TOKEN_FILE",
            "value": f"{names.ADMIN_DIR}/{names.ADMIN_TOKEN_KEY}",
        },
        {"name": "MARKETPLACE_NODE_POLICY_DIR", "value": names.POLICY_DIR},
        {"name": "MARKETPLACE_NODE_FLEET", "value": spec.fleet},
        {"name": "MARKETPLACE_NODE_MAX_PEERS", "value": str(spec.p2p.max_peers)},
        {
            "name": "MARKETPLACE_NODE_DRAIN_TIMEOUT_SECONDS",
            "value": str(spec.drain_timeout_seconds),
        },
    ]
    if spec.p2p.bootstrap_peers:
        env.append(
            {
                "name": "MARKETPLACE_NODE_BOOTSTRAP_PEERS",
                "value": ",".join(spec.p2p.bootstrap_peers),
            }
        )
    return env


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": names.PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _container(inputs: PodInputs) -> dict[str, Any]:
    spec = inputs.spec
    container: dict[str, Any] = {
        "name": names.CONTAINER,
        "image": inputs.image,
        "env": _env(spec),
        "ports": [{"name": names.PORT_NAME, "containerPort": spec.p2p.port, "protocol": "TCP"}],
        "readinessProbe": _probe("/readyz", period=1, failures=1),
        "livenessProbe": _probe("/healthz", period=10, failures=3),
        "startupProbe": _probe("/healthz", period=1, failures=60),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "identity", "mountPath": names.IDENTITY_DIR, "readOnly": True},
            {"name": "admin", "mountPath": names.ADMIN_DIR, "readOnly": True},
            {"name": "policy", "mountPath": names.POLICY_DIR, "readOnly": True},
            {"name": "data", "mountPath": names.DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own emptyDir
        ],
    }
    resources = spec.resources.model_dump(mode="json", exclude_defaults=True)
    if resources:
        container["resources"] = resources
    return container


def _policy_volume(fleet: str) -> dict[str, Any]:
    """The fleet ConfigMap and its shards in one directory. Shards are optional: they exist
    only once a policy outgrows one ConfigMap. Not part of the template hash, so pods made
    before shards existed are not restarted; they get a large policy by push."""
    shards = [
        {"configMap": {"name": names.policy_shard_configmap_name(fleet, i), "optional": True}}
        for i in range(1, names.POLICY_SHARDS + 1)
    ]
    return {
        "name": "policy",
        "projected": {
            "sources": [{"configMap": {"name": names.policy_configmap_name(fleet)}}, *shards]
        },
    }


def pod(ref: names.NodeRef, inputs: PodInputs) -> dict[str, Any]:
    """The node's pod: the image's entrypoint (no `command`), restricted security context,
    probes on the p2p port, the `joined` readiness gate, and a grace period that covers
    the node's own drain on SIGTERM."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": names.metadata(
            names.pod_name(ref.name),
            ref,
            annotations={
                names.TEMPLATE_HASH_ANNOTATION: template_hash(inputs),
                # tells the rollout's plan *why* a pod is stale; the hash covers it already
                **({RESTARTED_AT_ANNOTATION: inputs.restart_token} if inputs.restart_token else {}),
            },
        ),
        "spec": {
            "containers": [_container(inputs)],
            "readinessGates": [{"conditionType": names.JOINED_CONDITION}],
            "terminationGracePeriodSeconds": inputs.spec.drain_timeout_seconds
            + GRACE_MARGIN_SECONDS,
            "restartPolicy": "Always",
            "automountServiceAccountToken": False,  # nodes hold no API credentials
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS,
                "runAsGroup": RUN_AS,
                "fsGroup": RUN_AS,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumes": [
                {
                    "name": "identity",
                    "secret": {
                        "secretName": names.identity_secret_name(ref.name),
                        "defaultMode": 0o400,
                    },
                },
                {
                    "name": "admin",
                    "secret": {
                        "secretName": names.admin_secret_name(ref.fleet),
                        "defaultMode": 0o400,
                    },
                },
                _policy_volume(ref.fleet),
                {
                    "name": "data",
                    "persistentVolumeClaim": {"claimName": names.data_pvc_name(ref.name)},
                },
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }


def gate_patch(
    *, joined: bool, reason: str, message: str, now: datetime, uid: str | None = None
) -> dict[str, Any]:
    """A strategic-merge patch of `pods/status` that sets the readiness gate's condition
    (`names.JOINED_CONDITION`); with `uid` it applies only to that pod (a precondition)."""
    condition = {
        "type": names.JOINED_CONDITION,
        "status": "True" if joined else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": rfc3339(now),
    }
    patch: dict[str, Any] = {"status": {"conditions": [condition]}}
    if uid is not None:
        patch["metadata"] = {"uid": uid}
    return patch
