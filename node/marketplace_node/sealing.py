"""Signing and checking package metadata (by its publisher) and announcements (by their origin)."""

from __future__ import annotations

import base64
import secrets

from marketplace_node import identity
from marketplace_node.model import (
    Announcement,
    AnnouncementKind,
    PackageDraft,
    PackageMeta,
    ProviderRecord,
    b64,
)

_PLACEHOLDER = b64(bytes(64))


def sign_package(ident: identity.Identity, draft: PackageDraft) -> PackageMeta:
    unsigned = PackageMeta(**draft.model_dump(), publisher=ident.peer_id, signature=_PLACEHOLDER)
    return unsigned.model_copy(update={"signature": b64(ident.sign(unsigned.signed_bytes()))})


def verify_package(meta: PackageMeta) -> None:
    """`BadSignature` unless the publisher named in `meta` signed exactly this metadata."""
    identity.verify(meta.publisher, base64.b64decode(meta.signature), meta.signed_bytes())


def announce(
    ident: identity.Identity,
    kind: AnnouncementKind,
    *,
    created: int,
    package: PackageMeta | None = None,
    provider: ProviderRecord | None = None,
    address: str | None = None,
) -> Announcement:
    unsigned = Announcement(
        kind=kind,
        origin=ident.peer_id,
        created=created,
        nonce=secrets.token_hex(8),
        package=package,
        provider=provider,
        address=address,
        signature=_PLACEHOLDER,
    )
    return unsigned.model_copy(update={"signature": b64(ident.sign(unsigned.signed_bytes()))})


def verify_announcement(ann: Announcement) -> None:
    """Origin signature, and for package announcements the publisher's signature too."""
    identity.verify(ann.origin, base64.b64decode(ann.signature), ann.signed_bytes())
    if ann.package is not None:
        verify_package(ann.package)
