"""Validly signed documents for tests: packages and their announcements."""

from __future__ import annotations

import hashlib

from marketplace_node import sealing
from marketplace_node.model import (
    Announcement,
    AnnouncementKind,
    PackageDraft,
    PackageMeta,
    ProviderRecord,
)
from marketplace_protocol import identity

PUBLISHER = identity.Identity.generate()


def package(
    name: str = "pkg",
    version: str = "1.0",
    *,
    description: str = "",
    category: str = "tools",
    tags: tuple[str, ...] = (),
    content: bytes = b"content",
    publisher: identity.Identity = PUBLISHER,
    created: int | None = 100,
) -> PackageMeta:
    """A signed package (`created=None`: the node-signed form of earlier releases)."""
    draft = PackageDraft(
        name=name,
        version=version,
        description=description,
        category=category,
        tags=tags,
        digest=hashlib.sha256(content).hexdigest(),
        size=len(content),
    )
    return sealing.sign_package(publisher, draft, created=created)


def package_announcement(
    meta: PackageMeta, origin: identity.Identity = PUBLISHER, created: int = 100
) -> Announcement:
    return sealing.announce(origin, AnnouncementKind.PACKAGE, created=created, package=meta)


def provider_announcement(
    package_id: str,
    origin: identity.Identity,
    *,
    kind: AnnouncementKind = AnnouncementKind.PROVIDER_ADDED,
    created: int = 100,
) -> Announcement:
    record = ProviderRecord(
        package_id=package_id, peer_id=origin.peer_id, address="http://127.0.0.1:1", ttl_seconds=60
    )
    return sealing.announce(origin, kind, created=created, provider=record)
