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
    _rows: OrderedDict[str, dict[str, ProviderRow]] = field(default_factory=OrderedDict)

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
            rows = self._rows[row.package_id] = {}
        else:
            self._rows.move_to_end(row.package_id)
        current = rows.get(row.peer_id)
        if current is not None:
            if current.updated > row.updated:
                return False
        elif len(rows) >= self.per_package:
            soonest = min(rows.values(), key=lambda r: (r.expires_at, r.peer_id))
            if soonest.expires_at >= row.expires_at:
                return False
            del rows[soonest.peer_id]
        rows[row.peer_id] = row
        return True

    def drop(self, package_id: str, peer_id: str, created: int) -> None:
        rows = self._rows.get(package_id, {})
        row = rows.get(peer_id)
        if row is not None and row.updated <= created:
            del rows[peer_id]
            if not rows:
                del self._rows[package_id]

    def drop_peer(self, peer_id: str, created: int) -> None:
        for package_id in list(self._rows):
            self.drop(package_id, peer_id, created)

    def live(self, package_id: str, now_wall: float) -> list[ProviderRow]:
        """Unexpired records of a package, by peer id."""
        rows = self._rows.get(package_id, {}).values()
        return sorted((r for r in rows if r.expires_at > now_wall), key=lambda r: r.peer_id)

    def peers_of(self, package_id: str) -> frozenset[str]:
        return frozenset(self._rows.get(package_id, ()))

    def count(self, package_id: str, now_wall: float) -> int:
        return sum(r.expires_at > now_wall for r in self._rows.get(package_id, {}).values())

    def prune(self, now_wall: float) -> int:
        """Forget expired records; returns how many."""
        gone = 0
        for package_id in list(self._rows):
            rows = self._rows[package_id]
            for peer_id in [p for p, r in rows.items() if r.expires_at <= now_wall]:
                del rows[peer_id]
                gone += 1
            if not rows:
                del self._rows[package_id]
        return gone

    def sole(self, peer_id: str) -> list[str]:
        """Packages whose only provider is `peer_id` (what a draining node must hand off)."""
        return sorted(pid for pid, rows in self._rows.items() if rows.keys() == {peer_id})
