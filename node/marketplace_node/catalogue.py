"""What a node holds and shows: every stored package, the names' states, the search index.

Pure (no I/O): the service stores first, then tells the catalogue. Which
packages are visible follows from `names.resolve` alone; the search index
holds one document per author-signed name (its latest non-yanked version,
so a search shows each name once) plus every node-signed package of earlier
releases (marked `signedBy: node`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from marketplace_protocol.errors import NotFound

from marketplace_node import names, versions
from marketplace_node.model import NameRecord, OwnerView, PackageMeta, Query, SearchPage
from marketplace_node.search import SearchIndex


class Catalogue:
    def __init__(self) -> None:
        self.index = SearchIndex()
        self.names = names.NameRegistry()
        self._packages: dict[str, PackageMeta] = {}
        self._downloads: dict[str, int] = {}
        self._heads: dict[str, str] = {}  # name -> id of the package the index holds

    def __len__(self) -> int:
        return len(self._packages)

    def load(
        self, packages: Iterable[tuple[PackageMeta, int]], records: Iterable[NameRecord]
    ) -> None:
        """Everything a store holds, at start-up (each name resolved once)."""
        authored: list[names.Entry] = list(records)
        for meta, downloads in packages:
            self._packages[meta.id], self._downloads[meta.id] = meta, downloads
            if meta.author_signed:
                authored.append(meta)
            else:
                self.index.upsert(meta, downloads)
        self.names.load(authored)
        for name in self.names.names():
            self._reindex(name)

    def refusal(self, entry: names.Entry, *, settled: bool = False) -> str | None:
        """Why `entry` would be refused next to what we hold; None if it is acceptable.

        `settled` (a client's entry, new to the fleet): also refuse what the fold would
        accept only by sorting before what we hold — a same-second claim on a name we
        know an owner of, other bytes for a version we hold. Peers' entries are judged by
        the fold alone: that is what makes racing nodes converge."""
        known = isinstance(entry, PackageMeta) and entry.id in self._packages
        if settled and not known:
            reason = self._displaces(entry)
            if reason is not None:
                return reason
        if isinstance(entry, PackageMeta):
            if entry.id in self._packages:
                return None
            if not entry.author_signed:  # node-signed (earlier releases): unowned names only
                return names.NAME_TAKEN if self.names.state(entry.name).owners else None
        elif self.names.holds(entry):
            return None
        return self.names.verdict(entry)

    def _displaces(self, entry: names.Entry) -> str | None:
        state = self.names.state(entry.name)
        signer = entry.publisher if isinstance(entry, PackageMeta) else entry.signer
        if state.owners and signer not in state.owners:
            return names.NAME_TAKEN if isinstance(entry, PackageMeta) else names.NOT_OWNER
        if isinstance(entry, PackageMeta) and entry.version in state.versions:
            return names.VERSION_EXISTS
        return None

    def add(self, entry: names.Entry) -> list[PackageMeta]:
        """Hold `entry`; returns the packages it made visible (for subscribers)."""
        if isinstance(entry, PackageMeta):
            if entry.id in self._packages:
                return []
            self._packages[entry.id] = entry
            self._downloads.setdefault(entry.id, 0)
            if not entry.author_signed:
                self.index.upsert(entry)
                return [entry]
        before = set(self.names.state(entry.name).versions.values())
        after = set(self.names.add(entry).versions.values())
        self._reindex(entry.name)
        return [self._packages[pid] for pid in sorted(after - before) if pid in self._packages]

    def _reindex(self, name: str) -> None:
        state = self.names.state(name)
        newest = versions.latest(state.versions, state.yanked)
        head = state.versions.get(newest) if newest is not None else None
        if head is not None and head not in self._packages:
            head = None
        old = self._heads.pop(name, None)
        if old is not None and old != head:
            self.index.remove(old)
        if head is not None:
            self._heads[name] = head
            if head != old:
                self.index.upsert(self._packages[head], self._downloads.get(head, 0))

    def get(self, package_id: str) -> PackageMeta | None:
        """A visible package (a refused or superseded one is not served)."""
        meta = self._packages.get(package_id)
        return meta if meta is not None and self.names.visible(meta, package_id) else None

    def ids(self) -> list[str]:
        return [pid for pid, meta in self._packages.items() if self.names.visible(meta, pid)]

    def downloads(self, package_id: str) -> int:
        return self._downloads.get(package_id, 0)

    def set_downloads(self, package_id: str, downloads: int) -> None:
        self._downloads[package_id] = downloads
        self.index.set_downloads(package_id, downloads)

    def yanked(self, meta: PackageMeta) -> bool:
        return meta.author_signed and meta.version in self.names.state(meta.name).yanked

    def owners(self, name: str) -> OwnerView:
        state = self.names.state(name)
        held = versions.ordered(state.versions)
        return OwnerView(
            name=name,
            owners=tuple(sorted(state.owners)),
            versions=tuple(held),
            yanked=tuple(v for v in held if v in state.yanked),
            latest=versions.latest(held, state.yanked),
        )

    def resolve(
        self, name: str, wanted: str, *, hidden: frozenset[str] = frozenset()
    ) -> PackageMeta:
        """`name@wanted`: an exact version, `latest`, or an npm range (`^1.2`, `~1.2.3`);
        ranges and `latest` pass over yanked and `hidden` versions."""
        state = self.names.state(name)
        version = versions.select(state.versions, wanted, state.yanked | hidden)
        meta = self._packages.get(state.versions[version]) if version is not None else None
        if meta is None:
            raise NotFound("no version matches", details={"name": name, "wanted": wanted[:64]})
        return meta

    def search(self, query: Query, reputation: Callable[[str], float]) -> SearchPage:
        page = self.index.search(query, reputation)
        return page.model_copy(
            update={
                "results": tuple(
                    r.model_copy(update={"versions": self.owners(r.package.name).versions})
                    if r.package.author_signed
                    else r
                    for r in page.results
                )
            }
        )
