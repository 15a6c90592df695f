"""Kubernetes Events about MarketplaceNodes, posted through kopf's queue (never blocking)."""

from __future__ import annotations

import enum
from typing import Any

import kopf


class Reason(enum.StrEnum):
    CHANGED = "ChildChanged"  # a child created, adopted, patched or deleted
    PHASE_CHANGED = "PhaseChanged"
    REPLACING = "Replacing"
    REPLACED = "PodDeleted"
    DRAINED = "Drained"
    DRAIN_SKIPPED = "DrainSkipped"
    DEGRADED = "Degraded"
    RECONCILE_FAILED = "ReconcileFailed"


def normal(body: Any, reason: Reason, message: str) -> None:
    kopf.event(body, type="Normal", reason=reason.value, message=message[:1024])


def warning(body: Any, reason: Reason, message: str) -> None:
    kopf.event(body, type="Warning", reason=reason.value, message=message[:1024])
