"""TLS decisions, pure: which path issues a fleet's certificates, what a node mounts, what
its certificate names, and when the operator issues it again.

Two paths (docs/operations.md, "TLS"):
- cert-manager, when its CRDs are installed (or asked for): one `Certificate` per fleet,
  its Secret mounted by every member; cert-manager renews it.
- the operator's own CA otherwise: a CA Secret per fleet, and a certificate per node,
  issued again when it nears its end, when its names change or when the CA is replaced.

Every certificate carries the fleet's name (`names.fleet_tls_name`), which is what peers
verify: they dial pod addresses, which no certificate names in advance.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from marketplace_operator.model.tls import CertificateSource, TlsSpec
from marketplace_operator.render import names

CA_VALIDITY: Final = timedelta(days=3650)
NODE_VALIDITY: Final = timedelta(days=90)
RENEW_AT: Final = 2 / 3
"""A certificate is issued again once this share of its lifetime has passed (cert-manager's
default too: 30 days before the end of 90)."""


class Path(enum.StrEnum):
    """Who issues the certificates of a fleet with TLS on."""

    CERT_MANAGER = "cert-manager"
    OPERATOR = "operator"


class Unavailable(ValueError):
    """The spec asks for a path this cluster cannot serve (cert-manager not installed)."""


def path(spec: TlsSpec, *, cert_manager: bool) -> Path | None:
    """The fleet's certificate path; None with TLS off. `Unavailable` when the spec asks for
    cert-manager and its CRDs are not installed."""
    if not spec.enabled:
        return None
    match spec.source:
        case CertificateSource.OPERATOR:
            return Path.OPERATOR
        case CertificateSource.CERT_MANAGER if not cert_manager:
            raise Unavailable("tls.source is CertManager but cert-manager's CRDs are not installed")
        case CertificateSource.CERT_MANAGER:
            return Path.CERT_MANAGER
        case _:  # Auto
            return Path.CERT_MANAGER if cert_manager else Path.OPERATOR


def mount(ref: names.NodeRef, chosen: Path) -> names.TlsMount:
    """The Secret a node mounts: the fleet's (cert-manager) or its own (the operator's CA)."""
    secret = (
        names.fleet_tls_secret_name(ref.fleet)
        if chosen is Path.CERT_MANAGER
        else names.node_tls_secret_name(ref.name)
    )
    return names.TlsMount(secret=secret, peer_name=names.fleet_tls_name(ref.fleet, ref.namespace))


def mount_of(ref: names.NodeRef, spec: TlsSpec, *, cert_manager: bool) -> names.TlsMount | None:
    """What the node's pod mounts for TLS (None: plain HTTP, or a path not available).
    The node loop and the fleet rollout both hash a pod from this, so they agree."""
    try:
        chosen = path(spec, cert_manager=cert_manager)
    except Unavailable:
        return None
    return mount(ref, chosen) if chosen is not None else None


def fleet_names(fleet: str, namespace: str) -> list[str]:
    """The DNS names of the fleet: what every member's certificate carries."""
    short = names.fleet_tls_name(fleet, namespace)
    return [short, f"{short}.cluster.local"]


def node_names(ref: names.NodeRef) -> list[str]:
    """The names a node's own certificate carries: the fleet's, then its Service's."""
    svc = names.service_name(ref.name)
    own = [svc, f"{svc}.{ref.namespace}", f"{svc}.{ref.namespace}.svc"]
    return [*fleet_names(ref.fleet, ref.namespace), *own, f"{own[-1]}.cluster.local"]


def names_digest(dns_names: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(dns_names).encode()).hexdigest()[:16]


def renewal_due(not_before: datetime, not_after: datetime, now: datetime) -> bool:
    """Whether `RENEW_AT` of the certificate's lifetime has passed (or it is not valid)."""
    if now >= not_after or now < not_before:
        return True
    return now >= not_before + (not_after - not_before) * RENEW_AT


class Reissue(enum.StrEnum):
    """Why a node's operator-issued certificate must be issued (again)."""

    MISSING = "Missing"
    CA_CHANGED = "CaChanged"
    NAMES_CHANGED = "NamesChanged"
    RENEWAL_DUE = "RenewalDue"
    UNREADABLE = "Unreadable"


def _annotations(obj: Mapping[str, Any] | None) -> Mapping[str, str]:
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


def ca_id(ca_secret: Mapping[str, Any] | None) -> str | None:
    """The key id of the fleet CA (annotated on its Secret when made); None if absent."""
    if ca_secret is None:
        return None
    return _annotations(ca_secret).get(names.TLS_CA_ANNOTATION)


def reissue(
    cert_secret: Mapping[str, Any] | None,
    *,
    ca: str,
    dns_names: Sequence[str],
    now: datetime,
) -> Reissue | None:
    """Why the node's certificate Secret needs a new certificate, or None. Decided from
    the annotations the operator put on it when issuing (the watch holds no Secret data)."""
    if cert_secret is None:
        return Reissue.MISSING
    notes = _annotations(cert_secret)
    try:
        not_before = datetime.fromisoformat(notes[names.TLS_NOT_BEFORE_ANNOTATION])
        not_after = datetime.fromisoformat(notes[names.TLS_NOT_AFTER_ANNOTATION])
    except (KeyError, ValueError):
        return Reissue.UNREADABLE
    if notes.get(names.TLS_CA_ANNOTATION) != ca:
        return Reissue.CA_CHANGED
    if notes.get(names.TLS_NAMES_ANNOTATION) != names_digest(dns_names):
        return Reissue.NAMES_CHANGED
    if renewal_due(not_before, not_after, now):
        return Reissue.RENEWAL_DUE
    return None
