"""Carry out the reconcile plan's actions against the API server, and drain nodes.

The only place that turns `reconcile.node` actions into API calls. Creation is
idempotent (an existing object is not an error), deletion is guarded by the uid it was
decided for.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets as random_tokens
import time
from collections.abc import Callable
from datetime import UTC, datetime

from marketplace_protocol.admin import DrainState
from marketplace_protocol.identity import Identity

from marketplace_operator import certs, errors, k8s
from marketplace_operator.nodeclient import NodeClient
from marketplace_operator.reconcile import node as plan
from marketplace_operator.reconcile import tls
from marketplace_operator.render import names, secrets
from marketplace_operator.render import tls as render_tls

log = logging.getLogger(__name__)

RESOURCES: dict[plan.Kind, k8s.Resource] = {
    plan.Kind.IDENTITY: k8s.SECRETS,
    plan.Kind.FLEET_ADMIN: k8s.SECRETS,
    plan.Kind.POLICY_CONFIGMAP: k8s.CONFIGMAPS,
    plan.Kind.PVC: k8s.PVCS,
    plan.Kind.SERVICE: k8s.SERVICES,
    plan.Kind.POD: k8s.PODS,
    plan.Kind.TLS_CA: k8s.SECRETS,
    plan.Kind.TLS_SECRET: k8s.SECRETS,
    plan.Kind.ISSUER: k8s.ISSUERS,
    plan.Kind.CERTIFICATE: k8s.CERTIFICATES,
}


async def apply(kube: k8s.Kube, ref: names.NodeRef, action: plan.Action) -> str | None:
    """Carry out one action (not ReplacePod or Conflict); a short log line of what was done."""
    match action:
        case plan.Create(kind=kind, body=body):
            created = await kube.create(RESOURCES[kind], body)
            return f"created {kind} {body['metadata']['name']}" if created else None
        case plan.CreateIdentity():
            identity = Identity.generate()
            body = secrets.identity_secret(
                ref, private_key_pem=identity.to_pem(), peer_id=identity.peer_id
            )
            created = await kube.create(k8s.SECRETS, body)
            return f"created identity {identity.peer_id}" if created else None
        case plan.CreateAdminSecret(fleet_uid=fleet_uid):
            token = random_tokens.token_urlsafe(32)
            body = secrets.admin_secret(ref, token=token, fleet_uid=fleet_uid)
            created = await kube.create(k8s.SECRETS, body)
            return (
                f"created fleet admin Secret {names.admin_secret_name(ref.fleet)}"
                if created
                else None
            )
        case plan.CreateFleetCa(fleet_uid=fleet_uid):
            return await create_fleet_ca(kube, ref, fleet_uid)
        case plan.IssueCertificate(reason=reason, dns_names=dns_names):
            return await issue_certificate(kube, ref, dns_names, reason)
        case plan.Patch(kind=kind, name=name, patch=patch, why=why, strategic=strategic):
            content_type = k8s.STRATEGIC if strategic else k8s.MERGE
            await kube.patch(RESOURCES[kind], ref.namespace, name, patch, content_type=content_type)
            return f"patched {kind} {name} ({why})"
        case plan.DeletePod(name=name, uid=uid, reason=reason):
            await kube.delete(k8s.PODS, ref.namespace, name, uid=uid)
            return f"deleted pod {name} ({reason})"
        case _:
            raise ValueError(f"not an action apply() carries out: {action!r}")


async def create_fleet_ca(kube: k8s.Kube, ref: names.NodeRef, fleet_uid: str | None) -> str | None:
    """A new CA for the fleet, in its Secret (created only when absent)."""
    now = datetime.now(UTC)
    pair = certs.new_ca(f"{ref.fleet}.{ref.namespace} fleet CA", now=now, valid=tls.CA_VALIDITY)
    body = render_tls.ca_secret(
        ref,
        cert_pem=pair.cert_pem,
        key_pem=pair.key_pem,
        ca_id=certs.key_id(pair.cert_pem),
        fleet_uid=fleet_uid,
    )
    created = await kube.create(k8s.SECRETS, body)
    return f"created fleet CA Secret {body['metadata']['name']}" if created else None


async def issue_certificate(
    kube: k8s.Kube, ref: names.NodeRef, dns_names: tuple[str, ...], reason: str
) -> str:
    """Sign the node a certificate with the fleet's CA (read here: the watch holds no Secret
    data) and write its Secret, creating or replacing it."""
    ca_name = names.tls_ca_secret_name(ref.fleet)
    found = await kube.get(k8s.SECRETS, ref.namespace, ca_name)
    if found is None:
        raise errors.NotFound(f"Secret {ca_name} vanished")
    data = found.get("data") or {}
    ca = certs.KeyPair(
        base64.b64decode(data[render_tls.CERT_KEY]), base64.b64decode(data[render_tls.KEY_KEY])
    )
    now = datetime.now(UTC)
    pair = certs.issue(ca, dns_names=dns_names, now=now, valid=tls.NODE_VALIDITY)
    issued = certs.info(pair.cert_pem)
    body = render_tls.node_tls_secret(
        ref,
        cert_pem=pair.cert_pem,
        key_pem=pair.key_pem,
        ca_pem=ca.cert_pem,
        annotations=render_tls.certificate_annotations(
            ca_id=certs.key_id(ca.cert_pem),
            not_before=issued.not_before,
            not_after=issued.not_after,
            names_digest=tls.names_digest(dns_names),
        ),
    )
    if not await kube.create(k8s.SECRETS, body):
        patch = {"metadata": {"annotations": body["metadata"]["annotations"]}, "data": body["data"]}
        await kube.patch(k8s.SECRETS, ref.namespace, body["metadata"]["name"], patch)
    name = body["metadata"]["name"]
    return f"issued certificate {name} ({reason}), valid until {issued.not_after:%Y-%m-%d}"


async def drain(
    nodes: NodeClient,
    base: str,
    token: str,
    *,
    deadline_seconds: float,
    poll: float,
    stopped: Callable[[], bool] = lambda: False,
) -> bool:
    """Ask the node to drain and wait, at most `deadline_seconds`, until it has.

    True when the node reported `drained`; False on timeout. `NodeUnreachable` propagates
    so the caller can decide (proceed, with an Event).
    """
    deadline = time.monotonic() + deadline_seconds
    state = await nodes.drain(base, token, timeout_seconds=deadline_seconds)
    while state.state != DrainState.DRAINED:
        if time.monotonic() >= deadline or stopped():
            return False
        await asyncio.sleep(poll)
        try:
            state = await nodes.drain_status(base, token)
        except errors.NodeUnreachable:
            return True  # it drained and exited between our polls
    return True
