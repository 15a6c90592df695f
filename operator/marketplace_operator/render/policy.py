"""The policy part of the fleet ConfigMap (`<fleet>-policy`) and its shards, and the node
request body. Pure.

A node mounts the ConfigMap as a directory and reads `policy.json`, or
`policy.json.gz` (gzip, base64 in `binaryData`) when the JSON exceeds 512 KiB,
or, when even the gzip stream does not fit one ConfigMap, `policy.parts.json`:
a manifest naming the parts `policy.json.gz.<i>` kept in the shard ConfigMaps
`<fleet>-policy-<i>`, projected into the same directory (docs/contracts.md).
Exactly one of the three keys is present in the fleet ConfigMap: the patch sets
the others to null, which a JSON merge patch turns into a removal.

Sizes: the API server refuses a ConfigMap whose `data` and `binaryData` values
add up to more than 1 MiB, counting `binaryData` decoded (keys and metadata are
not counted; measured on the local cluster, docs/policy.md), and etcd's request
limit (1.5 MiB) sees the protobuf form, raw bytes too. So a part may hold
1 MiB minus headroom of gzip, not three quarters of that.
"""

from __future__ import annotations

import base64
import gzip
from dataclasses import dataclass
from typing import Any, Final

from marketplace_protocol.admin import PolicyDocument
from marketplace_protocol.parts import (
    MANIFEST_FILE,
    PolicyManifest,
    join,
    manifest_for,
    part_name,
    split,
)

from marketplace_operator.policy.versioning import PolicyVersion, to_annotations
from marketplace_operator.render import names

POLICY_KEY: Final = "policy.json"
POLICY_GZ_KEY: Final = "policy.json.gz"
MANIFEST_KEY: Final = MANIFEST_FILE
COMPRESS_ABOVE: Final = 512 * 1024
CONFIGMAP_LIMIT: Final = 1024 * 1024
"""The API server's cap on the decoded bytes of a ConfigMap's values."""
HEADROOM: Final = 64 * 1024  # members.json and the manifest share the fleet ConfigMap
VALUE_BUDGET: Final = CONFIGMAP_LIMIT - HEADROOM
"""Policy bytes (decoded) one ConfigMap may hold: the single-file policy or one part."""
SHARDS: Final = names.POLICY_SHARDS
"""Shard ConfigMaps `<fleet>-policy-1..3`: 2.8 MiB of gzip, ~65,000 random-id bans."""


class PolicyTooLarge(ValueError):
    """The rendered policy would not fit in the ConfigMap (the fleet's policy is unchanged)."""


def document_json(doc: PolicyDocument) -> bytes:
    """The document as compact JSON, the same bytes the node receives."""
    return doc.model_dump_json(by_alias=True, exclude_none=True).encode()


@dataclass(frozen=True)
class RenderedPolicy:
    """Fleet ConfigMap `data` / `binaryData` entries (None = remove the key), the parts
    for the shard ConfigMaps (base64, shard i+1 holds `shards[i]`; empty when the policy
    fits one ConfigMap) and the stored size (decoded bytes, as the API server counts)."""

    data: dict[str, str | None]
    binary_data: dict[str, str | None]
    stored_bytes: int
    compressed: bool
    shards: tuple[str, ...] = ()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def render_policy(
    doc: PolicyDocument, *, budget: int = VALUE_BUDGET, shards: int = SHARDS
) -> RenderedPolicy:
    """`policy.json` when small, `policy.json.gz` when that fits, otherwise the gzip stream
    in up to `shards` parts and a manifest; refuses what cannot fit even so."""
    raw = document_json(doc)
    if len(raw) <= COMPRESS_ABOVE:
        return RenderedPolicy(
            data={POLICY_KEY: raw.decode(), MANIFEST_KEY: None},
            binary_data={POLICY_GZ_KEY: None},
            stored_bytes=len(raw),
            compressed=False,
        )
    stream = gzip.compress(raw, compresslevel=6, mtime=0)  # mtime=0: same document, same bytes
    if len(stream) <= budget:
        return RenderedPolicy(
            data={POLICY_KEY: None, MANIFEST_KEY: None},
            binary_data={POLICY_GZ_KEY: _b64(stream)},
            stored_bytes=len(stream),
            compressed=True,
        )
    if len(stream) > budget * shards:
        raise PolicyTooLarge(
            f"policy version {doc.version} compresses to {len(stream)} bytes; "
            f"{shards} ConfigMaps hold at most {budget * shards}"
        )
    # Equal parts, so every shard keeps the same headroom.
    count = -(-len(stream) // budget)
    parts = split(stream, -(-len(stream) // count))
    manifest = manifest_for(stream, parts=len(parts), version=doc.version, hash=doc.hash)
    return RenderedPolicy(
        data={POLICY_KEY: None, MANIFEST_KEY: manifest.model_dump_json()},
        binary_data={POLICY_GZ_KEY: None},
        stored_bytes=len(stream),
        compressed=True,
        shards=tuple(_b64(part) for part in parts),
    )


def configmap_patch(
    doc: PolicyDocument, *, rendered: RenderedPolicy | None = None
) -> dict[str, Any]:
    """A JSON merge patch writing the policy and its version annotations, nothing else.

    The members list and the object's labels and owners belong to the node
    reconciler (render/configmap.py); this patch leaves them alone.
    """
    rendered = rendered or render_policy(doc)
    return {
        "metadata": {"annotations": _annotations(doc)},
        "data": rendered.data,
        "binaryData": rendered.binary_data,
    }


def shard_patches(doc: PolicyDocument, rendered: RenderedPolicy) -> list[dict[str, Any]]:
    """One JSON merge patch per shard ConfigMap (shard i+1 gets `[i]`), written before the
    fleet ConfigMap's manifest; the version annotations say which policy the part is of."""
    return [
        {
            "metadata": {"annotations": _annotations(doc)},
            "binaryData": {part_name(index): part},
        }
        for index, part in enumerate(rendered.shards, start=1)
    ]


def _annotations(doc: PolicyDocument) -> dict[str, str]:
    return to_annotations(PolicyVersion(version=doc.version, hash=doc.hash))


def read_policy(
    data: dict[str, str] | None,
    binary_data: dict[str, str] | None,
    shards: dict[int, dict[str, str]] | None = None,
) -> bytes | None:
    """The policy JSON stored in the fleet ConfigMap (any key) and, for a manifest, the
    shards' `binaryData` by index; None if there is none. The inverse of render."""
    if binary_data and binary_data.get(POLICY_GZ_KEY):
        return gzip.decompress(base64.b64decode(binary_data[POLICY_GZ_KEY]))
    if data and data.get(POLICY_KEY):
        return data[POLICY_KEY].encode()
    if data and data.get(MANIFEST_KEY):
        manifest = PolicyManifest.model_validate_json(data[MANIFEST_KEY])
        found = shards or {}
        parts = [
            base64.b64decode(found[i][part_name(i)]) if part_name(i) in found.get(i, {}) else None
            for i in range(1, manifest.parts + 1)
        ]
        return gzip.decompress(join(manifest, parts))
    return None


def request_body(doc: PolicyDocument) -> tuple[bytes, str | None]:
    """The `PUT /admin/v1/policy` body and its Content-Encoding: gzip above the threshold."""
    raw = document_json(doc)
    if len(raw) <= COMPRESS_ABOVE:
        return raw, None
    return gzip.compress(raw, compresslevel=6, mtime=0), "gzip"
