"""Signing and checking package metadata and owner records (by their author) and
announcements (by their origin node)."""

from __future__ import annotations

import base64
import secrets

from marketplace_protocol import identity

from marketplace_node.model import (
    Announcement,
    AnnouncementKind,
    NameRecord,
    PackageDraft,
    PackageMeta,
    ProviderRecord,
    RecordAction,
    b64,
)

_PLACEHOLDER = b64(bytes(64))


def sign_package(
    author: identity.Identity, draft: PackageDraft, *, created: int | None
) -> PackageMeta:
    """The author's signed package (`created` None: the node-signed form of earlier releases,
    kept for tests of stores that hold such packages)."""
    unsigned = PackageMeta(
        **draft.model_dump(), publisher=author.peer_id, created=created, signature=_PLACEHOLDER
    )
    return unsigned.model_copy(update={"signature": b64(author.sign(unsigned.signed_bytes()))})


def verify_package(meta: PackageMeta) -> None:
    """`BadSignature` unless the publisher named in `meta` signed exactly this metadata."""
    identity.verify(meta.publisher, base64.b64decode(meta.signature), meta.signed_bytes())


def sign_record(
    author: identity.Identity,
    *,
    name: str,
    action: RecordAction,
    subject: str,
    created: int,
) -> NameRecord:
    unsigned = NameRecord(
        name=name,
        action=action,
        subject=subject,
        signer=author.peer_id,
        created=created,
        signature=_PLACEHOLDER,
    )
    return unsigned.model_copy(update={"signature": b64(author.sign(unsigned.signed_bytes()))})


def verify_record(record: NameRecord) -> None:
    identity.verify(record.signer, base64.b64decode(record.signature), record.signed_bytes())


def announce(
    ident: identity.Identity,
    kind: AnnouncementKind,
    *,
    created: int,
    package: PackageMeta | None = None,
    provider: ProviderRecord | None = None,
    record: NameRecord | None = None,
    address: str | None = None,
) -> Announcement:
    unsigned = Announcement(
        kind=kind,
        origin=ident.peer_id,
        created=created,
        nonce=secrets.token_hex(8),
        package=package,
        provider=provider,
        record=record,
        address=address,
        signature=_PLACEHOLDER,
    )
    return unsigned.model_copy(update={"signature": b64(ident.sign(unsigned.signed_bytes()))})


def verify_announcement(ann: Announcement) -> None:
    """Origin signature, and the author's signature of the package or record it carries."""
    identity.verify(ann.origin, base64.b64decode(ann.signature), ann.signed_bytes())
    if ann.package is not None:
        verify_package(ann.package)
    if ann.record is not None:
        verify_record(ann.record)
