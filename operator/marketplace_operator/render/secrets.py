"""The node's identity Secret and the fleet's admin-token Secret."""

from __future__ import annotations

import base64
from typing import Any

from marketplace_operator.render import names


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def identity_secret(ref: names.NodeRef, *, private_key_pem: bytes, peer_id: str) -> dict[str, Any]:
    """The Ed25519 key; created once (only when absent) and never replaced, so the peer id
    (shown as an annotation) survives every pod replacement."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": names.metadata(
            names.identity_secret_name(ref.name),
            ref,
            annotations={names.PEER_ID_ANNOTATION: peer_id},
        ),
        "type": "Opaque",
        "immutable": True,
        "data": {names.IDENTITY_KEY: _b64(private_key_pem)},
    }


def admin_secret(ref: names.NodeRef, *, token: str, fleet_uid: str | None) -> dict[str, Any]:
    """The fleet's admin bearer token, shared by its nodes and the operator. Owned by the
    MarketplaceFleet; the operator deletes it when the fleet's last node goes."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": names.fleet_metadata(
            names.admin_secret_name(ref.fleet),
            namespace=ref.namespace,
            fleet=ref.fleet,
            fleet_uid=fleet_uid,
        ),
        "type": "Opaque",
        "data": {names.ADMIN_TOKEN_KEY: _b64(token.encode())},
    }
