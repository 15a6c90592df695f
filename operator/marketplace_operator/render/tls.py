"""TLS objects of a fleet: the operator's CA Secret, the certificate Secrets it issues, and
the cert-manager `Issuer` and `Certificate` when cert-manager issues.

Every certificate Secret has cert-manager's layout (`kubernetes.io/tls`: `tls.crt`,
`tls.key`, `ca.crt`), so a node mounts either path's Secret the same way.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from marketplace_operator.model.common import rfc3339
from marketplace_operator.model.tls import CERT_MANAGER_GROUP, IssuerRef
from marketplace_operator.render import names

CERT_MANAGER_VERSION: Final = f"{CERT_MANAGER_GROUP}/v1"
CERT_KEY: Final = "tls.crt"
KEY_KEY: Final = "tls.key"
CA_KEY: Final = "ca.crt"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _fleet_metadata(
    name: str, ref: names.NodeRef, fleet_uid: str | None, **annotations: str
) -> dict[str, Any]:
    return names.fleet_metadata(
        name, namespace=ref.namespace, fleet=ref.fleet, fleet_uid=fleet_uid, **annotations
    )


def ca_secret(
    ref: names.NodeRef,
    *,
    cert_pem: bytes,
    key_pem: bytes,
    ca_id: str,
    fleet_uid: str | None,
) -> dict[str, Any]:
    """The fleet's CA (`tls.crt`, `tls.key`: what a cert-manager CA Issuer reads)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _fleet_metadata(
            names.tls_ca_secret_name(ref.fleet), ref, fleet_uid, **{names.TLS_CA_ANNOTATION: ca_id}
        ),
        "type": "kubernetes.io/tls",
        "data": {CERT_KEY: _b64(cert_pem), KEY_KEY: _b64(key_pem)},
    }


def certificate_annotations(
    *, ca_id: str, not_before: datetime, not_after: datetime, names_digest: str
) -> dict[str, str]:
    """What the operator's renewal decisions read back (reconcile.tls.reissue)."""
    return {
        names.TLS_CA_ANNOTATION: ca_id,
        names.TLS_NOT_BEFORE_ANNOTATION: rfc3339(not_before),
        names.TLS_NOT_AFTER_ANNOTATION: rfc3339(not_after),
        names.TLS_NAMES_ANNOTATION: names_digest,
    }


def node_tls_secret(
    ref: names.NodeRef,
    *,
    cert_pem: bytes,
    key_pem: bytes,
    ca_pem: bytes,
    annotations: dict[str, str],
) -> dict[str, Any]:
    """A node's certificate from the operator's CA, as cert-manager would write it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": names.metadata(
            names.node_tls_secret_name(ref.name), ref, annotations=annotations
        ),
        "type": "kubernetes.io/tls",
        "data": {CERT_KEY: _b64(cert_pem), KEY_KEY: _b64(key_pem), CA_KEY: _b64(ca_pem)},
    }


def ca_issuer(ref: names.NodeRef, *, fleet_uid: str | None) -> dict[str, Any]:
    """A cert-manager CA Issuer signing with the fleet's operator-made CA Secret."""
    return {
        "apiVersion": CERT_MANAGER_VERSION,
        "kind": "Issuer",
        "metadata": _fleet_metadata(names.ca_issuer_name(ref.fleet), ref, fleet_uid),
        "spec": {"ca": {"secretName": names.tls_ca_secret_name(ref.fleet)}},
    }


def certificate(
    ref: names.NodeRef,
    *,
    dns_names: Sequence[str],
    issuer: IssuerRef | None,
    fleet_uid: str | None,
) -> dict[str, Any]:
    """The fleet's one cert-manager Certificate. Its Secret carries our labels
    (`secretTemplate`), so the operator's Secret watch sees it arrive."""
    ref_body = (
        issuer.model_dump(mode="json", by_alias=True)
        if issuer is not None
        else {
            "name": names.ca_issuer_name(ref.fleet),
            "kind": "Issuer",
            "group": CERT_MANAGER_GROUP,
        }
    )
    secret = names.fleet_tls_secret_name(ref.fleet)
    return {
        "apiVersion": CERT_MANAGER_VERSION,
        "kind": "Certificate",
        "metadata": _fleet_metadata(secret, ref, fleet_uid),
        "spec": {
            "secretName": secret,
            "secretTemplate": {"labels": names.fleet_labels(ref.fleet)},
            "commonName": dns_names[0],
            "dnsNames": list(dns_names),
            "usages": ["server auth", "client auth", "digital signature", "key encipherment"],
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "duration": "2160h",
            "renewBefore": "720h",
            "issuerRef": ref_body,
        },
    }
