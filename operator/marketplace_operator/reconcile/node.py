"""`plan(desired, observed)`: the actions that bring one MarketplaceNode's children in line.

A purely computational function with no side effects (the executor in handlers/ does the
I/O). Level-based: it looks only at what exists now, so re-running it after a crash, a
resume or a duplicate event yields no action twice — creations of something that exists
are never planned, and objects we created but lost track of are adopted, not duplicated.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from marketplace_operator.model.mnode import MarketplaceNodeSpec
from marketplace_operator.model.tls import IssuerRef
from marketplace_operator.reconcile import tls
from marketplace_operator.reconcile.observe import PodView, controller_uid, pod_view
from marketplace_operator.render import configmap, names, pod, pvc, service
from marketplace_operator.render import tls as render_tls


class Kind(enum.StrEnum):
    IDENTITY = "identity-secret"
    FLEET_ADMIN = "admin-secret"
    POLICY_CONFIGMAP = "policy-configmap"
    PVC = "pvc"
    SERVICE = "service"
    POD = "pod"
    TLS_CA = "tls-ca-secret"
    TLS_SECRET = "tls-secret"  # noqa: S105 - a kind's name, not a secret
    ISSUER = "issuer"
    CERTIFICATE = "certificate"


PVC_BIND_GRACE = timedelta(seconds=10)


@dataclass(frozen=True)
class Create:
    kind: Kind
    body: dict[str, Any]


@dataclass(frozen=True)
class CreateIdentity:
    """Generate a key and create the identity Secret (only ever planned when it is absent)."""


@dataclass(frozen=True)
class CreateAdminSecret:
    """Generate the fleet's admin token and create its Secret (only when absent), owned
    by the MarketplaceFleet `fleet_uid` (when known)."""

    fleet_uid: str | None = None


@dataclass(frozen=True)
class CreateFleetCa:
    """Make the fleet's CA and its Secret (only when absent), owned like the admin Secret."""

    fleet_uid: str | None = None


@dataclass(frozen=True)
class IssueCertificate:
    """Issue the node a certificate from the fleet's CA and write its Secret."""

    reason: tls.Reissue
    dns_names: tuple[str, ...]


@dataclass(frozen=True)
class Patch:
    """A merge patch; `strategic` for list merges by key (ownerReferences by uid), which
    adds to what is there on the server instead of replacing what we last saw. Without
    `announce` it is bookkeeping: logged, not posted as an Event."""

    kind: Kind
    name: str
    patch: dict[str, Any]
    why: str
    strategic: bool = False
    announce: bool = True


@dataclass(frozen=True)
class DeletePod:
    """Remove a pod that ended (Failed/Succeeded) so a fresh one is created."""

    name: str
    uid: str
    reason: str


@dataclass(frozen=True)
class ReplacePod:
    """Graceful replacement: drain, delete with grace, create. Gated by the rollout hook."""

    name: str
    uid: str
    reason: str


@dataclass(frozen=True)
class WaitForVolume:
    """The pod waits for its claim to be bound; nothing to do but look again soon."""

    claim: str


@dataclass(frozen=True)
class Conflict:
    """An object with our name belongs to someone else: report it, touch nothing."""

    kind: Kind
    name: str
    owner_uid: str


Action = (
    Create
    | CreateIdentity
    | CreateAdminSecret
    | CreateFleetCa
    | IssueCertificate
    | Patch
    | DeletePod
    | ReplacePod
    | WaitForVolume
    | Conflict
)


@dataclass(frozen=True)
class Desired:
    ref: names.NodeRef
    spec: MarketplaceNodeSpec
    pod_inputs: pod.PodInputs
    paused: bool = False
    tls: TlsPlan | None = None  # the fleet's spec.tls is on


@dataclass(frozen=True)
class TlsPlan:
    """The fleet's TLS as decided (reconcile.tls.path) and its cert-manager issuer."""

    path: tls.Path
    issuer: IssuerRef | None = None


@dataclass(frozen=True)
class Observed:
    """The children as the API has them now (raw dicts), `None` when absent."""

    pod: dict[str, Any] | None = None
    service: dict[str, Any] | None = None
    pvc: dict[str, Any] | None = None
    identity: dict[str, Any] | None = None
    admin_secret: dict[str, Any] | None = None
    policy_configmap: dict[str, Any] | None = None
    binding_mode: str | None = None  # volumeBindingMode of the claim's StorageClass, if known
    # The uid of the fleet's MarketplaceFleet, owner of the fleet's shared objects (None
    # until the operator has made it: the fleet's loop adopts what was made before).
    fleet_uid: str | None = None
    tls_ca: dict[str, Any] | None = None  # the fleet's CA Secret (metadata only)
    tls_secret: dict[str, Any] | None = None  # the certificate Secret the pod mounts


def _ownership(kind: Kind, obj: dict[str, Any], ref: names.NodeRef) -> list[Action]:
    """Nothing if we control `obj`; adopt it if it is ours by label but unowned; else conflict."""
    owner = controller_uid(obj)
    name = obj.get("metadata", {}).get("name", "")
    if owner == ref.uid:
        return []
    labels = obj.get("metadata", {}).get("labels") or {}
    if owner is None and labels.get(names.NODE_LABEL) == ref.name:
        patch = {"metadata": {"ownerReferences": [names.owner_reference(ref)]}}
        return [Patch(kind, name, patch, "adopt", strategic=True)]
    return [Conflict(kind, name, owner or "")]


def _plan_fleet(desired: Desired, observed: Observed) -> list[Action]:
    """The fleet's shared objects, when absent. Their owner is the MarketplaceFleet, kept
    by the fleet's loop (`reconcile.shared`): a member never writes to them for ownership,
    which at 1,000 nodes was 1,000 writes of 1,000-reference objects (issue 15)."""
    ref, uid = desired.ref, observed.fleet_uid
    actions: list[Action] = []
    if observed.admin_secret is None:
        actions.append(CreateAdminSecret(fleet_uid=uid))
    if observed.policy_configmap is None:
        body = configmap.policy_configmap(ref, members=configmap.members_json([]), fleet_uid=uid)
        actions.append(Create(Kind.POLICY_CONFIGMAP, body))
    return actions


def _plan_tls(desired: Desired, observed: Observed, now: datetime) -> list[Action]:
    """The fleet's CA when one of ours signs (the operator path, or cert-manager without an
    issuer named); then the node's certificate (operator) or the fleet's Certificate."""
    chosen = desired.tls
    if chosen is None:
        return []
    ref, uid = desired.ref, observed.fleet_uid
    actions: list[Action] = []
    own_ca = chosen.path is tls.Path.OPERATOR or chosen.issuer is None
    if own_ca and observed.tls_ca is None:
        actions.append(CreateFleetCa(fleet_uid=uid))
    if chosen.path is tls.Path.CERT_MANAGER:
        if observed.tls_secret is None:  # cert-manager has not written it (yet)
            dns = tls.fleet_names(ref.fleet, ref.namespace)
            if chosen.issuer is None:
                actions.append(Create(Kind.ISSUER, render_tls.ca_issuer(ref, fleet_uid=uid)))
            body = render_tls.certificate(ref, dns_names=dns, issuer=chosen.issuer, fleet_uid=uid)
            actions.append(Create(Kind.CERTIFICATE, body))
        return actions
    ca = tls.ca_id(observed.tls_ca)
    if ca is None:
        return actions  # issued once the CA is there (the next pass)
    dns = tls.node_names(ref)
    why = tls.reissue(observed.tls_secret, ca=ca, dns_names=dns, now=now)
    if why is not None:
        actions.append(IssueCertificate(why, tuple(dns)))
    return actions


def _plan_pvc(desired: Desired, observed: dict[str, Any] | None) -> list[Action]:
    wanted = pvc.data_pvc(desired.ref, desired.spec)
    if observed is None:
        return [Create(Kind.PVC, wanted)]
    if _claim_deleting(observed):
        return []  # going (a relocation): its successor is created once it is gone
    actions = _ownership(Kind.PVC, observed, desired.ref)
    size = wanted["spec"]["resources"]["requests"]["storage"]
    have = observed.get("spec", {}).get("resources", {}).get("requests", {}).get("storage")
    if have != size:  # the CRD only lets the size grow
        patch = {"spec": {"resources": {"requests": {"storage": size}}}}
        actions.append(Patch(Kind.PVC, wanted["metadata"]["name"], patch, "resize"))
    return actions


def volume_mismatch(
    spec: MarketplaceNodeSpec, claim: dict[str, Any] | None, resizing: bool = False
) -> str | None:
    """How the data claim differs from the spec, or None. A claim's class cannot change,
    and its size only by the resize this reconcile asks for (`resizing`: asked just now,
    the watch has not shown it yet); the status must not call such a node Ready."""
    if claim is None:
        return None
    have = claim.get("spec") or {}
    wanted_class = spec.storage.storage_class_name
    if wanted_class and have.get("storageClassName") != wanted_class:
        return (
            f"the data claim {claim['metadata'].get('name')} has StorageClass "
            f"{have.get('storageClassName') or '(none)'}, the spec asks for {wanted_class}: "
            "a claim's class cannot change (move the data to a new node, or restore the spec)"
        )
    size = (have.get("resources") or {}).get("requests", {}).get("storage")
    if not resizing and size is not None and str(size) != str(spec.storage.size):
        return f"the data claim requests {size}, the spec asks for {spec.storage.size}"
    return None


def _plan_service(desired: Desired, observed: dict[str, Any] | None) -> list[Action]:
    wanted = service.service(desired.ref, desired.spec)
    if observed is None:
        return [Create(Kind.SERVICE, wanted)]
    actions = _ownership(Kind.SERVICE, observed, desired.ref)
    have = observed.get("spec", {})
    want = wanted["spec"]
    ports = [{k: p.get(k) for k in ("name", "port", "targetPort")} for p in have.get("ports", [])]
    want_ports = [{k: p[k] for k in ("name", "port", "targetPort")} for p in want["ports"]]
    if have.get("selector") != want["selector"] or ports != want_ports:
        patch = {"spec": {"selector": want["selector"], "ports": want["ports"]}}
        actions.append(Patch(Kind.SERVICE, wanted["metadata"]["name"], patch, "spec-drift"))
    return actions


def needs_replacement(view: PodView, desired_hash: str) -> str | None:
    """Why this running pod must give way to a new one, or None."""
    if view.deleting:
        return None
    if view.template_hash != desired_hash:
        return "PodTemplateChanged"
    return None


def volume_ready(
    claim: dict[str, Any] | None, now: datetime, *, binding_mode: str | None = None
) -> bool:
    """May the pod be created? Once its claim is Bound — a pod created earlier is marked
    unschedulable and the scheduler may retry it only minutes later — except that a
    WaitForFirstConsumer class binds only for a pod: then at once. When the class's mode is
    unknown, after the claim has waited `PVC_BIND_GRACE` unbound."""
    if claim is None:
        return False
    if (claim.get("status") or {}).get("phase") == "Bound":
        return True
    if binding_mode is not None:
        return binding_mode == "WaitForFirstConsumer"
    created = claim.get("metadata", {}).get("creationTimestamp")
    if created is None:
        return False
    born = datetime.fromisoformat(str(created))
    return now - born >= PVC_BIND_GRACE


def _claim_deleting(claim: dict[str, Any] | None) -> bool:
    return claim is not None and (claim.get("metadata") or {}).get("deletionTimestamp") is not None


def _plan_pod(desired: Desired, observed: Observed, now: datetime) -> list[Action]:
    if observed.pod is None and _claim_deleting(observed.pvc):
        # A relocated node's old claim: the new pod waits for the new claim.
        return [WaitForVolume(names.data_pvc_name(desired.ref.name))]
    if observed.pod is None:
        if not volume_ready(observed.pvc, now, binding_mode=observed.binding_mode):
            return [WaitForVolume(names.data_pvc_name(desired.ref.name))]
        return [Create(Kind.POD, pod.pod(desired.ref, desired.pod_inputs))]
    return _plan_existing_pod(desired, observed.pod)


def _plan_existing_pod(desired: Desired, observed: dict[str, Any]) -> list[Action]:
    ownership = _ownership(Kind.POD, observed, desired.ref)
    if any(isinstance(a, Conflict) for a in ownership):
        return ownership
    view = pod_view(observed)
    if view.deleting:
        return ownership  # wait for it to go; the next pass creates the new one
    if view.phase in {"Failed", "Succeeded"}:
        return [*ownership, DeletePod(view.name, view.uid, f"Pod{view.phase}")]
    reason = needs_replacement(view, pod.template_hash(desired.pod_inputs))
    if reason is not None:
        return [*ownership, ReplacePod(view.name, view.uid, reason)]
    return ownership


def plan(desired: Desired, observed: Observed, *, now: datetime) -> list[Action]:
    """Actions in dependency order: fleet objects, identity, TLS, volume, service, pod.

    A paused node plans nothing. The pod is planned even while its Secrets are being
    created in the same pass (the kubelet waits for mounted objects to appear), but not
    before its data volume is bound (see `volume_ready`).
    """
    if desired.paused:
        return []
    actions = _plan_fleet(desired, observed)
    if observed.identity is None:
        actions.append(CreateIdentity())
    else:
        actions += _ownership(Kind.IDENTITY, observed.identity, desired.ref)
    actions += _plan_tls(desired, observed, now)
    actions += _plan_pvc(desired, observed.pvc)
    actions += _plan_service(desired, observed.service)
    actions += _plan_pod(desired, observed, now)
    return actions
