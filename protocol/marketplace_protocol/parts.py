"""A policy too large for one ConfigMap: the gzip stream in parts, and the manifest. Pure.

The operator splits the gzip'd policy into `policy.json.gz.1` … `policy.json.gz.N`, one
per shard ConfigMap, and writes `policy.parts.json` into the fleet ConfigMap last
(docs/contracts.md). The kubelet refreshes each ConfigMap of a projected volume
independently of the operator's writes, so a node may see new parts with an old
manifest, or the reverse: the SHA-256 of the whole stream tells a consistent set from
a torn one. Both sides import this module, so the format has one definition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_FILE: Final = "policy.parts.json"
PART_PREFIX: Final = "policy.json.gz."
MAX_PARTS: Final = 8
"""Refused above this: a bound on what a node reads, not the operator's shard count."""


def part_name(index: int) -> str:
    """The key (and mounted file name) of part `index`, counted from 1."""
    return f"{PART_PREFIX}{index}"


class PolicyManifest(BaseModel):
    """Which parts make up the policy, and the digest that proves a set of them whole."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    version: int = Field(ge=0, description="The policy version the parts hold.")
    hash: str | None = Field(default=None, description="The policy's content hash.")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the whole gzip stream."
    )
    parts: int = Field(ge=1, le=MAX_PARTS, description="Parts 1..parts, in order.")
    size: int = Field(ge=0, description="Bytes of the whole gzip stream.")


class TornParts(Exception):
    """The parts do not match the manifest (caught mid-update): not an error, look again."""


def digest(stream: bytes) -> str:
    return hashlib.sha256(stream).hexdigest()


def manifest_for(stream: bytes, *, parts: int, version: int, hash: str | None) -> PolicyManifest:
    return PolicyManifest(
        version=version, hash=hash, sha256=digest(stream), parts=parts, size=len(stream)
    )


def split(stream: bytes, part_bytes: int) -> list[bytes]:
    """`stream` in consecutive parts of at most `part_bytes` (at least one part)."""
    if part_bytes <= 0:
        raise ValueError("part_bytes must be positive")
    return [stream[i : i + part_bytes] for i in range(0, len(stream), part_bytes)] or [b""]


def join(manifest: PolicyManifest, parts: Sequence[bytes | None]) -> bytes:
    """The whole stream, or `TornParts` when a part is missing or the digest differs."""
    if len(parts) != manifest.parts or any(p is None for p in parts):
        raise TornParts(f"{sum(p is not None for p in parts)} of {manifest.parts} parts present")
    stream = b"".join(p for p in parts if p is not None)
    if len(stream) != manifest.size or digest(stream) != manifest.sha256:
        raise TornParts(f"parts do not match the manifest of version {manifest.version}")
    return stream
