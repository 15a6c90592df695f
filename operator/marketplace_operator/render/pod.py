"""The node's Pod, and the hash of the inputs that shape it.

The hash covers the *inputs* (image, p2p settings, resources, storage class, drain
timeout, scheduling and template overrides when set, a restart request) rather than the
rendered object, so a new operator
version that renders the pod differently does not restart the fleet: only a change
a user made does. The rollout planner imports `template_hash` to see who is stale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from marketplace_operator.model.common import rfc3339
from marketplace_operator.model.fleet import RESTARTED_AT_ANNOTATION
from marketplace_operator.model.mnode import DEFAULT_PRIVATE_PORT, MarketplaceNodeSpec
from marketplace_operator.model.scheduling import (
    Affinity,
    LabelSelector,
    PodAffinity,
    PodAffinityTerm,
    SchedulingSpec,
    TemplateSpec,
    TopologySpreadConstraint,
)
from marketplace_operator.render import names
from marketplace_operator.render.names import TlsMount

RUN_AS = 65532
# SIGTERM → the node drains itself within drainTimeout; give it this much more to exit.
GRACE_MARGIN_SECONDS = 10


@dataclass(frozen=True)
class PodInputs:
    """Everything the pod is a function of. Changing any field means a new pod."""

    image: str
    spec: MarketplaceNodeSpec
    restart_token: str = ""  # e.g. the marketplace.p2p.dev/restartedAt annotation
    tls: TlsMount | None = None  # HTTPS on the public listener (the fleet's spec.tls)

    @classmethod
    def resolve(
        cls,
        spec: MarketplaceNodeSpec,
        *,
        default_image: str,
        restart_token: str = "",
        tls: TlsMount | None = None,
    ) -> PodInputs:
        """The inputs of a node with `spec`: its image, or the operator's default."""
        return cls(
            image=spec.image or default_image, spec=spec, restart_token=restart_token, tls=tls
        )

    @cached_property
    def digest(self) -> str:
        """`template_hash`: made once per inputs (a pass asks for it several times, and a
        node's inputs are kept from pass to pass while its spec is the same)."""
        material = json.dumps(self.hash_material(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(material.encode()).hexdigest()[:16]

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
            # Only when set: nodes made before these fields existed keep their hash (and pod).
            # (The schema defaults empty objects in: those count as unset.)
            **{
                key: value
                for key, value in (
                    ("scheduling", _dump(spec.scheduling)),
                    ("template", _dump(spec.template)),
                )
                if value
            },
            # Only when on, so that pods made before TLS existed keep their hash.
            **({"tls": [self.tls.secret, self.tls.peer_name]} if self.tls else {}),
            # only when changed: the hashes of pods made before the field stay the same
            **(
                {"privatePort": spec.p2p.private_port}
                if spec.p2p.private_port != DEFAULT_PRIVATE_PORT
                else {}
            ),
        }


def _dump(model: SchedulingSpec | TemplateSpec) -> Any:
    dumped = model.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    spread = dumped.pop("topologySpreadConstraints", None)
    out: dict[str, Any] = _drop_empty(dumped)
    if spread is not None:  # [] means "no spreading", unlike unset
        out["topologySpreadConstraints"] = _drop_empty(spread)
    return out


RESTART_TOKEN_MAX = 64  # the fleet status records the token with this bound


def restart_token(mnode: Mapping[str, Any]) -> str:
    """The restart request of a MarketplaceNode body ("" when none was made): the node's
    reconcile and the fleet rollout must read the same token, or their hashes differ."""
    notes = (mnode.get("metadata") or {}).get("annotations") or {}
    return str(notes.get(RESTARTED_AT_ANNOTATION, ""))[:RESTART_TOKEN_MAX]


def inputs_of(
    mnode: Mapping[str, Any], *, default_image: str, tls: TlsMount | None = None
) -> PodInputs:
    """Everything a MarketplaceNode's pod is a function of: spec, resolved image, restart
    token, and the TLS its fleet asks for."""
    spec = MarketplaceNodeSpec.model_validate(mnode.get("spec") or {})
    return PodInputs.resolve(
        spec, default_image=default_image, restart_token=restart_token(mnode), tls=tls
    )


def template_hash(inputs: PodInputs) -> str:
    """A short stable digest of `inputs` (canonical JSON, SHA-256, 16 hex digits)."""
    return inputs.digest


def _tls_env(tls: TlsMount) -> list[dict[str, Any]]:
    """The mounted certificate Secret, cert-manager's layout, and the fleet's name."""
    return [
        {"name": "MARKETPLACE_NODE_TLS_CERT_FILE", "value": f"{names.TLS_DIR}/tls.crt"},
        {"name": "MARKETPLACE_NODE_TLS_KEY_FILE", "value": f"{names.TLS_DIR}/tls.key"},
        {"name": "MARKETPLACE_NODE_TLS_CA_FILE", "value": f"{names.TLS_DIR}/ca.crt"},
        {"name": "MARKETPLACE_NODE_TLS_PEER_NAME", "value": tls.peer_name},
    ]


def _env(spec: MarketplaceNodeSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {
            "name": "MARKETPLACE_NODE_HOST",
            "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
        },
        {"name": "MARKETPLACE_NODE_PORT", "value": str(spec.p2p.port)},
        {"name": "MARKETPLACE_NODE_PRIVATE_PORT", "value": str(spec.p2p.private_port)},
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
        "httpGet": {"path": path, "port": names.PRIVATE_PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _container(inputs: PodInputs) -> dict[str, Any]:
    spec = inputs.spec
    container: dict[str, Any] = {
        "name": names.CONTAINER,
        "image": inputs.image,
        "env": _env(spec) + (_tls_env(inputs.tls) if inputs.tls else []),
        "ports": [
            {"name": names.PORT_NAME, "containerPort": spec.p2p.port, "protocol": "TCP"},
            {
                "name": names.PRIVATE_PORT_NAME,
                "containerPort": spec.p2p.private_port,
                "protocol": "TCP",
            },
        ],
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
    if inputs.tls is not None:
        container["volumeMounts"].append(
            {"name": "tls", "mountPath": names.TLS_DIR, "readOnly": True}
        )
    resources = spec.resources.model_dump(mode="json", exclude_defaults=True)
    if resources:
        container["resources"] = resources
    container["env"] += [{"name": e.name, "value": e.value} for e in spec.template.container.env]
    return container


ZONE_KEY = "topology.kubernetes.io/zone"
HOSTNAME_KEY = "kubernetes.io/hostname"


def default_spread() -> list[TopologySpreadConstraint]:
    """A fleet spreads softly over Nodes, then zones: one Node or zone lost takes as few of
    its nodes as the cluster allows, and a fleet still schedules on a single Node."""
    return [
        TopologySpreadConstraint(max_skew=1, topology_key=key, when_unsatisfiable="ScheduleAnyway")
        for key in (HOSTNAME_KEY, ZONE_KEY)
    ]


def _fleet_selector(fleet: str) -> LabelSelector:
    return LabelSelector(
        match_labels={"app.kubernetes.io/name": names.APP_NAME, names.FLEET_LABEL: fleet}
    )


def scheduling(fleet: str, spec: SchedulingSpec) -> dict[str, Any]:
    """The pod spec's placement fields. A spread constraint without a selector counts the
    node's own fleet."""
    spread = spec.topology_spread_constraints
    if spread is None:
        spread = default_spread()
    out: dict[str, Any] = {}
    if spread:
        out["topologySpreadConstraints"] = [
            _dump_model(
                c
                if _selects(c.label_selector)
                else c.model_copy(update={"label_selector": _fleet_selector(fleet)})
            )
            for c in spread
        ]
    affinity = _dump_model(_fleet_by_default(spec.affinity, fleet)) if spec.affinity else {}
    if affinity:
        out["affinity"] = affinity
    if spec.tolerations:
        out["tolerations"] = [_dump_model(t) for t in spec.tolerations]
    if spec.node_selector:
        out["nodeSelector"] = dict(spec.node_selector)
    if spec.priority_class_name:
        out["priorityClassName"] = spec.priority_class_name
    return out


def _fleet_by_default(affinity: Affinity, fleet: str) -> Affinity:
    """Pod (anti-)affinity terms without a selector select the node's own fleet (a term
    with no selector would match no pod at all)."""

    def term(t: PodAffinityTerm) -> PodAffinityTerm:
        return (
            t
            if _selects(t.label_selector)
            else t.model_copy(update={"label_selector": _fleet_selector(fleet)})
        )

    def terms(rules: PodAffinity | None) -> PodAffinity | None:
        if rules is None:
            return None
        required = [term(t) for t in rules.required_during_scheduling_ignored_during_execution]
        preferred = [
            w.model_copy(update={"pod_affinity_term": term(w.pod_affinity_term)})
            for w in rules.preferred_during_scheduling_ignored_during_execution
        ]
        return rules.model_copy(
            update={
                "required_during_scheduling_ignored_during_execution": required,
                "preferred_during_scheduling_ignored_during_execution": preferred,
            }
        )

    return affinity.model_copy(
        update={
            "pod_affinity": terms(affinity.pod_affinity),
            "pod_anti_affinity": terms(affinity.pod_anti_affinity),
        }
    )


def _dump_model(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = _drop_empty(
        model.model_dump(mode="json", by_alias=True, exclude_none=True)
    )
    return dumped


def _drop_empty(value: Any) -> Any:
    """Empty lists and maps left out, inner ones first (`{"a": {"b": []}}` is empty)."""
    if isinstance(value, dict):
        inner = {k: _drop_empty(v) for k, v in value.items()}
        return {k: v for k, v in inner.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value


def _selects(selector: LabelSelector | None) -> bool:
    """A selector that names something (the schema defaults an absent one to `{}`)."""
    return selector is not None and bool(selector.match_labels or selector.match_expressions)


def _template_pod_fields(template: TemplateSpec) -> dict[str, Any]:
    pod_t = template.pod
    out: dict[str, Any] = {}
    if pod_t.host_aliases:
        out["hostAliases"] = [_dump_model(a) for a in pod_t.host_aliases]
    if pod_t.image_pull_secrets:
        out["imagePullSecrets"] = [_dump_model(r) for r in pod_t.image_pull_secrets]
    if pod_t.runtime_class_name:
        out["runtimeClassName"] = pod_t.runtime_class_name
    if pod_t.scheduler_name:
        out["schedulerName"] = pod_t.scheduler_name
    return out


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
    probes on the private port, the `joined` readiness gate, and a grace period that covers
    the node's own drain on SIGTERM."""
    extra = inputs.spec.template.pod.metadata
    meta = names.metadata(
        names.pod_name(ref.name),
        ref,
        annotations={
            **extra.annotations,  # the operator's own keys win
            names.TEMPLATE_HASH_ANNOTATION: template_hash(inputs),
            names.PRIVATE_PORT_ANNOTATION: str(inputs.spec.p2p.private_port),
            # tells the rollout's plan *why* a pod is stale; the hash covers it already
            **({RESTARTED_AT_ANNOTATION: inputs.restart_token} if inputs.restart_token else {}),
            **({names.TLS_SCHEME_ANNOTATION: "https"} if inputs.tls else {}),
        },
    )
    meta["labels"] = {**extra.labels, **meta["labels"]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            **_template_pod_fields(inputs.spec.template),
            **scheduling(ref.fleet, inputs.spec.scheduling),
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
                *(_tls_volume(inputs.tls) if inputs.tls else []),
            ],
        },
    }


def _tls_volume(tls: TlsMount) -> list[dict[str, Any]]:
    """The certificate Secret; the kubelet updates the files when it changes, and the node
    reloads them (a renewal needs no new pod)."""
    return [{"name": "tls", "secret": {"secretName": tls.secret, "defaultMode": 0o400}}]


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
