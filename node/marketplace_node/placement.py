"""Where a package's copies belong and how many it needs (pure): rendezvous hashing.

Every node ranks the candidate holders of a package the same way, by
`sha256(package id, peer id)`, so without coordination they agree on which
peers a publish pushes to first and which holder repairs a package that lost
copies (the best-ranked live holder: one repairer per package, not all of them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Replication:
    """`factor` copies wanted; a publish is acknowledged once `min_in_sync` hold the bytes."""

    factor: int = 3
    min_in_sync: int = 2

    def capped(self, fleet_size: int) -> Replication:
        """The factor is capped at the fleet's size, and `min_in_sync` at the factor."""
        factor = max(1, min(self.factor, fleet_size))
        return Replication(factor=factor, min_in_sync=max(1, min(self.min_in_sync, factor)))


def rank(package_id: str, peers: Iterable[str]) -> list[str]:
    """`peers` in the package's rendezvous order (best first)."""
    return sorted(peers, key=lambda peer: hashlib.sha256(f"{package_id}\n{peer}".encode()).digest())


@dataclass(frozen=True, slots=True)
class Repair:
    """What a holder should do for one package: ask `targets` to take a copy."""

    package_id: str
    missing: int
    targets: tuple[str, ...]


def plan_repair(
    package_id: str, *, me: str, holders: Iterable[str], live_peers: Iterable[str], factor: int
) -> Repair | None:
    """None unless the package lacks copies and we are its best-ranked live holder; then the
    best-ranked live non-holders, as many as copies are missing (plus spares to fall back on)."""
    held = set(holders) | {me}
    missing = factor - len(held)
    if missing <= 0 or rank(package_id, held)[0] != me:
        return None
    others = rank(package_id, set(live_peers) - held)
    return Repair(package_id, missing, tuple(others)) if others else None
