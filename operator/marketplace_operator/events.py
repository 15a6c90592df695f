"""Kubernetes Events, posted through kopf's queue (never blocking): the one way we post them."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, cast

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
    NODE_LOST = "NodeLost"  # its Kubernetes Node is lost: the pod deleted forcibly
    RELOCATING = "Relocating"  # its data claim's Node is unavailable: a new claim elsewhere


def post(target: Mapping[str, Any], *, reason: str, message: str, warning: bool = False) -> None:
    """An Event about `target` (an object with apiVersion, kind and metadata name,
    namespace and uid); the API server caps a message at 1 KiB."""
    kind = "Warning" if warning else "Normal"
    kopf.event(cast("kopf.Body", target), type=kind, reason=reason, message=message[:1024])


def normal(body: Mapping[str, Any], reason: Reason, message: str) -> None:
    """An Event about a MarketplaceNode."""
    post(body, reason=reason.value, message=message)


def warning(body: Mapping[str, Any], reason: Reason, message: str) -> None:
    post(body, reason=reason.value, message=message, warning=True)
