"""The policy part of the fleet ConfigMap (`<fleet>-policy`), and the node request body. Pure.

A node mounts the ConfigMap as a directory and reads `policy.json`, or
`policy.json.gz` (gzip, base64 in `binaryData`) when the JSON exceeds 512 KiB
(docs/contracts.md). Exactly one of the two keys is present: the patch sets
the other to null, which a JSON merge patch turns into a removal. The whole
ConfigMap must stay under the API server's 1 MiB; 10,000 bans compress to
well under that (measured in the unit tests and docs/policy.md).
"""

from __future__ import annotations

import base64
import gzip
from dataclasses import dataclass
from typing import Any, Final

from marketplace_node.admin.models import PolicyDocument

from marketplace_operator.policy.versioning import PolicyVersion, to_annotations

POLICY_KEY: Final = "policy.json"
POLICY_GZ_KEY: Final = "policy.json.gz"
COMPRESS_ABOVE: Final = 512 * 1024
CONFIGMAP_LIMIT: Final = 1024 * 1024
HEADROOM: Final = 64 * 1024  # members.json, metadata and annotations share the object


class PolicyTooLarge(ValueError):
    """The rendered policy would not fit in the ConfigMap (the fleet's policy is unchanged)."""


def document_json(doc: PolicyDocument) -> bytes:
    """The document as compact JSON, the same bytes the node receives."""
    return doc.model_dump_json(by_alias=True, exclude_none=True).encode()


@dataclass(frozen=True)
class RenderedPolicy:
    """ConfigMap `data` / `binaryData` entries (None = remove the key) and the stored size."""

    data: dict[str, str | None]
    binary_data: dict[str, str | None]
    stored_bytes: int
    compressed: bool


def render_policy(doc: PolicyDocument) -> RenderedPolicy:
    """`policy.json` when small, otherwise `policy.json.gz`; refuses what cannot fit."""
    raw = document_json(doc)
    if len(raw) <= COMPRESS_ABOVE:
        rendered = RenderedPolicy(
            data={POLICY_KEY: raw.decode()},
            binary_data={POLICY_GZ_KEY: None},
            stored_bytes=len(raw),
            compressed=False,
        )
    else:
        # mtime=0: the same document always compresses to the same bytes.
        packed = base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode()
        rendered = RenderedPolicy(
            data={POLICY_KEY: None},
            binary_data={POLICY_GZ_KEY: packed},
            stored_bytes=len(packed),
            compressed=True,
        )
    if rendered.stored_bytes > CONFIGMAP_LIMIT - HEADROOM:
        raise PolicyTooLarge(
            f"policy version {doc.version} needs {rendered.stored_bytes} bytes in the ConfigMap; "
            f"the limit is {CONFIGMAP_LIMIT - HEADROOM}"
        )
    return rendered


def configmap_patch(
    doc: PolicyDocument, *, rendered: RenderedPolicy | None = None
) -> dict[str, Any]:
    """A JSON merge patch writing the policy and its version annotations, nothing else.

    The members list and the object's labels and owners belong to the node
    reconciler (render/configmap.py); this patch leaves them alone.
    """
    rendered = rendered or render_policy(doc)
    version = PolicyVersion(version=doc.version, hash=doc.hash)
    return {
        "metadata": {"annotations": to_annotations(version)},
        "data": rendered.data,
        "binaryData": rendered.binary_data,
    }


def read_policy(data: dict[str, str] | None, binary_data: dict[str, str] | None) -> bytes | None:
    """The policy JSON stored in a ConfigMap (either key), or None; the inverse of render."""
    if binary_data and binary_data.get(POLICY_GZ_KEY):
        return gzip.decompress(base64.b64decode(binary_data[POLICY_GZ_KEY]))
    if data and data.get(POLICY_KEY):
        return data[POLICY_KEY].encode()
    return None


def request_body(doc: PolicyDocument) -> tuple[bytes, str | None]:
    """The `PUT /admin/v1/policy` body and its Content-Encoding: gzip above the threshold."""
    raw = document_json(doc)
    if len(raw) <= COMPRESS_ABOVE:
        return raw, None
    return gzip.compress(raw, compresslevel=6, mtime=0), "gzip"
