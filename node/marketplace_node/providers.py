"""Provider records in memory (pure): which peers serve which package, until when.

A record carries the origin's `created` time of the announcement that set it;
an older announcement never overrides or removes a newer record, so
out-of-order gossip and anti-entropy replays converge to the same table (the
store applies the same rule in SQL). Expiry is wall-clock because records
are persisted and must expire across restarts.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from marketplace_node import limits


@dataclass(frozen=True, slots=True)
class ProviderRow:
    package_id: str
    peer_id: str
    address: str
    expires_at: float  # wall clock: it must survive a restart
    updated: int  # origin's `created` of the announcement that set it


@dataclass
class ProviderTable:
    """Bounded per package: a new provider beyond `per_package` replaces the record that
    expires soonest, if the newcomer outlives it (bounded memory whatever peers announce).

    Bounded in packages too: any peer may announce records for content ids we have never
    heard of, so beyond `max_packages` the package whose records were set least recently
    is forgotten (its rows stay in the store). Providers re-announce their records well
    within the TTL, so live packages keep moving to the young end.
    """

    per_package: int = limits.PROVIDERS_PER_PACKAGE_MAX
    max_packages: int = limits.PROVIDER_PACKAGES_MAX
    # package id -> its rows by peer id; a tuple, not a dict: most packages have one or two
    # providers, and an empty dict alone costs more than a one-row tuple and its row.
    _rows: OrderedDict[str, tuple[ProviderRow, ...]] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        """Packages with provider records held."""
        return len(self._rows)

    def load(self, rows: Iterable[ProviderRow]) -> None:
        for row in rows:
            self.set(row)

    def set(self, row: ProviderRow) -> bool:
        """Record `row` unless a newer record or a full, longer-lived table wins; True if kept."""
        rows = self._rows.get(row.package_id)
        if rows is None:
            while len(self._rows) >= self.max_packages:
                self._rows.popitem(last=False)
            rows = ()
        else:
            self._rows.move_to_end(row.package_id)
        current = next((r for r in rows if r.peer_id == row.peer_id), None)
        if current is not None:
            if current.updated > row.updated:
                return False
            rows = tuple(r for r in rows if r is not current)
        elif len(rows) >= self.per_package:
            soonest = min(rows, key=lambda r: (r.expires_at, r.peer_id))
            if soonest.expires_at >= row.expires_at:
                return False
            rows = tuple(r for r in rows if r is not soonest)
        self._rows[row.package_id] = tuple(sorted((*rows, row), key=lambda r: r.peer_id))
        return True

    def _keep(self, package_id: str, rows: tuple[ProviderRow, ...]) -> None:
        if rows:
            self._rows[package_id] = rows
        else:
            self._rows.pop(package_id, None)

    def drop(self, package_id: str, peer_id: str, created: int) -> None:
        rows = self._rows.get(package_id, ())
        kept = tuple(r for r in rows if r.peer_id != peer_id or r.updated > created)
        if len(kept) != len(rows):
            self._keep(package_id, kept)

    def drop_peer(self, peer_id: str, created: int) -> None:
        for package_id in list(self._rows):
            self.drop(package_id, peer_id, created)

    def live(self, package_id: str, now_wall: float) -> list[ProviderRow]:
        """Unexpired records of a package, by peer id."""
        return [r for r in self._rows.get(package_id, ()) if r.expires_at > now_wall]

    def peers_of(self, package_id: str) -> frozenset[str]:
        return frozenset(r.peer_id for r in self._rows.get(package_id, ()))

    def count(self, package_id: str, now_wall: float) -> int:
        return sum(r.expires_at > now_wall for r in self._rows.get(package_id, ()))

    def prune(self, now_wall: float) -> int:
        """Forget expired records; returns how many."""
        gone = 0
        for package_id, rows in list(self._rows.items()):
            kept = tuple(r for r in rows if r.expires_at > now_wall)
            if len(kept) != len(rows):
                gone += len(rows) - len(kept)
                self._keep(package_id, kept)
        return gone

    def sole(self, peer_id: str) -> list[str]:
        """Packages whose only provider is `peer_id` (what a draining node must hand off)."""
        return sorted(
            pid for pid, rows in self._rows.items() if len(rows) == 1 and rows[0].peer_id == peer_id
        )
