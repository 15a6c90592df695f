"""`MarketplaceFleet.spec.tls`: HTTPS on the fleet's public listener, and where its
certificates come from (docs/operations.md, "TLS")."""

from __future__ import annotations

import enum
from typing import Final

from pydantic import Field

from marketplace_operator.model.common import CamelModel

CERT_MANAGER_GROUP: Final = "cert-manager.io"
CERTIFICATE_CRD: Final = f"certificates.{CERT_MANAGER_GROUP}"
"""Its presence is how the operator knows cert-manager is installed."""


class CertificateSource(enum.StrEnum):
    """Who issues the nodes' certificates."""

    AUTO = "Auto"
    """cert-manager when its CRDs are installed, else the operator's own CA."""
    CERT_MANAGER = "CertManager"
    OPERATOR = "Operator"


class IssuerKind(enum.StrEnum):
    ISSUER = "Issuer"
    CLUSTER_ISSUER = "ClusterIssuer"


class IssuerRef(CamelModel):
    """A cert-manager issuer (as a Certificate's `issuerRef`)."""

    name: str = Field(
        max_length=253, pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$", description="Its name."
    )
    kind: IssuerKind = Field(default=IssuerKind.ISSUER, description="Issuer or ClusterIssuer.")
    group: str = Field(default=CERT_MANAGER_GROUP, max_length=253, description="Its API group.")


class TlsSpec(CamelModel):
    """HTTPS on the public listener (peer protocol and client API)."""

    enabled: bool = Field(
        default=False,
        description="Serve the peer protocol and the client API over HTTPS; peers verify "
        "each other against the fleet's CA. Changing it rolls the fleet.",
    )
    source: CertificateSource = Field(
        default=CertificateSource.AUTO,
        description="Who issues the certificates: Auto (cert-manager when installed, else "
        "the operator's CA), CertManager or Operator.",
    )
    issuer_ref: IssuerRef | None = Field(
        default=None,
        description="With cert-manager: the issuer of the fleet's Certificate. Unset: a CA "
        "Issuer on the fleet's operator-made CA Secret (<fleet>-tls-ca).",
    )
