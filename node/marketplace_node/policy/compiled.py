"""A policy document compiled once into the immutable form the hot path reads.

Compiling turns limits into GCRA rates, bans into an indexed `BanTable`
with monotonic deadlines, and fills operations the document leaves out with
the defaults, so `admit()` does dict lookups only. Whether a document may
replace the applied one is the pure `check_version`.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from marketplace_protocol import errors
from marketplace_protocol.admin import (
    Escalation,
    Operation,
    PolicyDocument,
    RateLimits,
    Replication,
)

from marketplace_node.policy.bans import BanTable, fleet_bans
from marketplace_node.policy.peering import PeeringRule
from marketplace_node.policy.ratelimit import Rate
from marketplace_node.policy.takedowns import Takedowns, compile_takedowns

_DEFAULTS = RateLimits()


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    version: int | None  # None until a document is applied: the built-in defaults
    hash: str
    per_peer: Mapping[Operation, Rate]
    per_publisher: Rate
    global_rate: Rate
    max_pending: int
    escalation: Escalation
    bans: BanTable = field(default_factory=BanTable)
    replication: Replication | None = None  # the fleet's; None: the node's own settings
    takedowns: Takedowns = field(default_factory=Takedowns)
    peering: PeeringRule | None = None  # the fleet's; None: its own fleet only, from anywhere


def policy_hash(doc: PolicyDocument) -> str:
    """The document's own hash if it carries one, else a digest of its content."""
    if doc.hash:
        return doc.hash
    content = doc.model_dump_json(by_alias=True, exclude={"hash", "version"})
    return "sha256:" + hashlib.sha256(content.encode()).hexdigest()


def compile_policy(
    doc: PolicyDocument | None,
    *,
    now_monotonic: float,
    now_wall: float,
    digest: str | None = None,
) -> CompiledPolicy:
    """Pure (no I/O, no clock reads): safe to run in a worker thread for large documents."""
    limits = _DEFAULTS if doc is None else doc.rate_limits
    per_peer = {op: Rate.of(limits.per_peer.get(op, _DEFAULTS.per_peer[op])) for op in Operation}
    return CompiledPolicy(
        version=None if doc is None else doc.version,
        hash="" if doc is None else (digest or policy_hash(doc)),
        per_peer=MappingProxyType(per_peer),
        per_publisher=Rate.of(limits.per_publisher),
        global_rate=Rate.of(limits.global_),
        max_pending=limits.max_pending_queries,
        escalation=limits.escalation,
        bans=BanTable()
        if doc is None
        else fleet_bans(doc.bans, now_monotonic=now_monotonic, now_wall=now_wall),
        replication=None if doc is None else doc.replication,
        takedowns=Takedowns() if doc is None else compile_takedowns(doc.blocks),
        peering=None if doc is None else PeeringRule.of(doc.peering),
    )


class Change(enum.Enum):
    APPLY = "apply"
    UNCHANGED = "unchanged"


def check_version(
    applied_version: int | None, applied_hash: str, version: int, digest: str
) -> Change:
    """May a document (`version`, `digest`) replace the applied one? Pure; raises when not.

    Older → `StalePolicy` (rollback protection); same version and hash →
    `UNCHANGED` (an idempotent re-push); same version, other content →
    `Conflict` (two writers disagree; the operator must bump the version).
    """
    if applied_version is None or version > applied_version:
        return Change.APPLY
    if version < applied_version:
        raise errors.StalePolicy(
            f"policy version {version} is older than the applied version {applied_version}",
            details={"appliedVersion": str(applied_version)},
        )
    if digest == applied_hash:
        return Change.UNCHANGED
    raise errors.Conflict(
        f"policy version {version} is already applied with different content",
        details={"appliedVersion": str(applied_version), "appliedHash": applied_hash},
    )
