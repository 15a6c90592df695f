"""Policy versions: a content hash, and a per-fleet generation that only ever grows.

The version of a fleet's policy is stored in the API, as annotations on the
fleet's policy ConfigMap (`<fleet>-policy`), written once the nodes were pushed
it (`worker`, step 3). A restarted operator reads it back, so it never re-issues
an old number for new content; and because nodes refuse a version older than the
one they applied, or the same version with other content (rollback protection, as
TUF does for metadata), the `floor` — the highest version any node reports —
lifts the next number above anything a node has seen even if the ConfigMap write
was lost.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from marketplace_protocol.admin import PolicyDocument

from marketplace_operator.policy.effective import PolicyContent

VERSION_ANNOTATION: Final = "marketplace.p2p.dev/policy-version"
HASH_ANNOTATION: Final = "marketplace.p2p.dev/policy-hash"
HASH_PREFIX: Final = "sha256:"


def canonical_json(content: PolicyContent) -> bytes:
    """The content as canonical JSON: sorted keys, no spaces, wire aliases, UTC times."""
    data: dict[str, Any] = {
        "bans": [b.model_dump(mode="json", by_alias=True) for b in content.bans],
        "rateLimits": content.rate_limits.model_dump(mode="json", by_alias=True),
    }
    if content.blocks:  # absent when empty: the hash of a policy without them is kept
        data["blocks"] = [b.model_dump(mode="json", by_alias=True) for b in content.blocks]
    if content.replication is not None:  # absent: the hash of a policy without it is kept
        data["replication"] = content.replication.model_dump(mode="json", by_alias=True)
    if content.peering is not None:  # absent: likewise
        data["peering"] = content.peering.model_dump(mode="json", by_alias=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(content: PolicyContent) -> str:
    """`sha256:<hex>` of the canonical JSON: equal content, equal hash, across restarts."""
    return HASH_PREFIX + hashlib.sha256(canonical_json(content)).hexdigest()


@dataclass(frozen=True, order=True)
class PolicyVersion:
    """A fleet's policy generation and the hash of the content it names."""

    version: int
    hash: str


def next_version(previous: PolicyVersion | None, digest: str, *, floor: int = 0) -> PolicyVersion:
    """The version to publish for content hashing to `digest`.

    Unchanged content keeps its version (no push storm on resync); new
    content gets one more than both the stored version and `floor`, the
    highest version any node reports having applied.
    """
    stored = 0 if previous is None else previous.version
    if previous is not None and previous.hash == digest and stored >= floor:
        return previous
    return PolicyVersion(version=max(stored, floor) + 1, hash=digest)


def stamp(content: PolicyContent, version: PolicyVersion) -> PolicyDocument:
    """The document nodes receive: the content with its version and hash."""
    return PolicyDocument(
        version=version.version,
        hash=version.hash,
        bans=list(content.bans),
        rate_limits=content.rate_limits,
        replication=content.replication,
        blocks=list(content.blocks),
        peering=content.peering,
    )


def to_annotations(version: PolicyVersion) -> dict[str, str]:
    return {VERSION_ANNOTATION: str(version.version), HASH_ANNOTATION: version.hash}


def from_annotations(annotations: Mapping[str, str] | None) -> PolicyVersion | None:
    """The stored version, or None when absent or unreadable (the node floor then protects)."""
    if not annotations:
        return None
    raw_version = annotations.get(VERSION_ANNOTATION, "")
    digest = annotations.get(HASH_ANNOTATION, "")
    if not raw_version.isdigit() or not digest.startswith(HASH_PREFIX):
        return None
    return PolicyVersion(version=int(raw_version), hash=digest)


def current_version(configmap: Mapping[str, Any] | None) -> int | None:
    """The fleet's current policy version from its ConfigMap (for the node's joined gate)."""
    if configmap is None:
        return None
    found = from_annotations((configmap.get("metadata") or {}).get("annotations"))
    return None if found is None else found.version
