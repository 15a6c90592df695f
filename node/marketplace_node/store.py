"""The durable catalogue: SQLite (WAL, synchronous=FULL) owned by one writer thread.

Every call runs on a single dedicated thread (the connection never leaves it),
so the event loop never blocks on disk and writes are serialised without
locks. Tables:

* `changes(seq, ann_id, body)` — every accepted announcement, in order; `seq`
  is the monotonically increasing change sequence used by sync and subscribe.
* `packages(id, meta, downloads, seq)` — the catalogue.
* `providers(package_id, peer_id, address, expires_at, updated)` — who serves
  what; `expires_at` is wall-clock (it must survive a restart), `updated` is
  the origin's `created` so an older announcement never overrides a newer one.
* `name_records(id, name, body)` — signed owner records of names.
* `kv(key, value)` — sync cursors per peer.

The schema is versioned by `PRAGMA user_version`: `migrate` runs the steps of
`MIGRATIONS` a store has not run yet, so a store upgrades in place.

An announcement and its effect commit in one transaction, and with
synchronous=FULL a commit is on disk before `apply` returns: an acknowledged
publish survives kill -9, and a crash leaves either the old or the new state.
A full disk (SQLITE_FULL, ENOSPC) fails the call with `StorageFull` (507
`storage_full`) and leaves the old state: SQLite may already have rolled the
transaction back itself, so a rollback here runs only if one is still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from marketplace_protocol.errors import StorageFull

from marketplace_node.disk import DataVolume, storage_full_from
from marketplace_node.model import (
    PACKAGE_KINDS,
    Announcement,
    AnnouncementKind,
    NameRecord,
    PackageMeta,
)
from marketplace_node.providers import ProviderRow

T = TypeVar("T")

_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ann_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT '',
    peer TEXT,
    package TEXT,
    created INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS packages (
    id TEXT PRIMARY KEY,
    meta TEXT NOT NULL,
    downloads INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS providers (
    package_id TEXT NOT NULL,
    peer_id TEXT NOT NULL,
    address TEXT NOT NULL,
    expires_at REAL NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (package_id, peer_id)
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_CHANGES_COLUMNS_1 = {  # columns the unversioned releases added one by one
    "kind": "TEXT NOT NULL DEFAULT ''",
    "peer": "TEXT",
    "package": "TEXT",
    "created": "INTEGER NOT NULL DEFAULT 0",
}
_PROVIDER_KINDS = ("provider_added", "provider_removed")


def _migrate_1(db: sqlite3.Connection) -> None:
    """The schema of the releases before `user_version`: created, or completed in place."""
    for statement in _SCHEMA_1.split(";"):  # not executescript: it would COMMIT the step
        if statement.strip():
            db.execute(statement)
    present = {row[1] for row in db.execute("PRAGMA table_info(changes)")}
    for column, decl in _CHANGES_COLUMNS_1.items():
        if column not in present:
            db.execute(f"ALTER TABLE changes ADD COLUMN {column} {decl}")
    db.execute(
        "CREATE INDEX IF NOT EXISTS changes_provider ON changes(peer, package)"
        " WHERE peer IS NOT NULL"
    )


def _migrate_2(db: sqlite3.Connection) -> None:
    """Owner records of names (authors, co-owners, transfers, yanks)."""
    db.execute(
        "CREATE TABLE name_records (id TEXT PRIMARY KEY, name TEXT NOT NULL, body TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX name_records_name ON name_records(name)")


# Migration i (1-based) brings a store from user_version i-1 to i. Append only: never edit
# a released step, a store on disk may already have run it.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_migrate_1, _migrate_2)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> int:
    """Run the steps this store has not run, each in its own transaction with its version
    bump (a crash leaves a whole step or none); returns the version found. A store newer
    than this program is refused rather than misread."""
    found = int(db.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise RuntimeError(f"store schema {found} is newer than this node ({SCHEMA_VERSION})")
    for version in range(found + 1, SCHEMA_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version - 1](db)
            db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
    return found


@dataclass(frozen=True, slots=True)
class Applied:
    """What an accepted announcement changed (None: it was already known)."""

    seq: int
    new_package: bool
    provider: bool = True  # False: its provider record was superseded (`_superseded`)


class Store:
    def __init__(self, path: Path, volume: DataVolume | None = None) -> None:
        self._path = path
        self._volume = volume or DataVolume(path.parent)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._db: sqlite3.Connection | None = None
        self._queued: list[tuple[Announcement, float, asyncio.Future[Applied | None]]] = []
        self._committer: asyncio.Future[None] | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._db is None:
                raise RuntimeError("store is closed")
            try:
                return fn(self._db)
            except sqlite3.Error as exc:
                full = storage_full_from(exc)
                if full is None:
                    raise
                raise full from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def open(self) -> bool:
        """Open (creating or migrating); True if the store did not exist (a new or lost disk).
        `StorageFull` if it cannot for want of space: SQLite then says "disk I/O error" (the
        WAL index cannot be made), so the volume's free space decides."""

        def connect() -> bool:
            fresh = not self._path.exists()
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db: sqlite3.Connection | None = None
            try:
                db = sqlite3.connect(self._path, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA busy_timeout=5000")
                migrate(db)
            except sqlite3.Error as exc:
                if db is not None:
                    db.close()
                full = storage_full_from(exc)
                if full is None and self._volume.full():
                    full = StorageFull("the data volume is full: the catalogue cannot open")
                if full is None:
                    raise
                raise full from exc
            self._db = db
            return fresh

        return await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def close(self) -> None:
        def disconnect() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, disconnect)
        self._executor.shutdown(wait=True)

    def size_bytes(self) -> int:
        """Bytes of the database and its WAL (a cheap stat, fine at scrape time)."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(f"{self._path}{suffix}").st_size
        return total

    @property
    def is_open(self) -> bool:
        return self._db is not None

    async def apply(self, ann: Announcement, *, now_wall: float) -> Applied | None:
        """Commit one announcement; answered once the commit is on disk. Announcements
        applied while a commit runs share the next one (group commit): one transaction and
        one fsync for all of them, where each used to wait for its own."""
        waiter: asyncio.Future[Applied | None] = asyncio.get_running_loop().create_future()
        self._queued.append((ann, now_wall, waiter))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.ensure_future(self._commit_queued())
        return await asyncio.shield(waiter)  # a caller that gives up leaves it committed

    async def _commit_queued(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            pairs = [(ann, wall) for ann, wall, _ in batch]
            try:
                results = await self._run(functools.partial(_apply_all, anns=pairs))
            except Exception as exc:
                if len(batch) == 1:
                    _answer(batch[0][2], exc)
                    continue
                for ann, wall, waiter in batch:  # one by one: each gets its own outcome
                    try:
                        one = await self._run(functools.partial(_apply_all, anns=[(ann, wall)]))
                    except Exception as failed:
                        _answer(waiter, failed)
                    else:
                        _answer(waiter, one[0])
                continue
            for (_, _, waiter), result in zip(batch, results, strict=True):
                _answer(waiter, result)

    async def apply_many(
        self, anns: Iterable[Announcement], *, now_wall: float
    ) -> list[Applied | None]:
        batch = [(ann, now_wall) for ann in anns]
        return await self._run(lambda db: _apply_all(db, batch))

    async def announcements_of(self, package_ids: Iterable[str]) -> dict[str, Announcement]:
        """The announcement that brought each package (by id; unknown ids are left out)."""
        ids = list(package_ids)

        def query(db: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = (
                db.execute(
                    "SELECT packages.id, changes.body FROM packages"
                    " JOIN changes ON changes.seq = packages.seq WHERE packages.id = ?",
                    (package_id,),
                ).fetchone()
                for package_id in ids
            )
            return [row for row in rows if row is not None]

        rows = await self._run(query) if ids else []
        return {pid: Announcement.model_validate_json(body) for pid, body in rows}

    async def last_seq(self) -> int:
        return await self._run(
            lambda db: int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])
        )

    async def changes_after(self, seq: int, limit: int) -> list[tuple[int, str]]:
        return await self._run(
            lambda db: db.execute(
                "SELECT seq, body FROM changes WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
        )

    async def packages(self) -> list[tuple[PackageMeta, int]]:
        rows = await self._run(
            lambda db: db.execute("SELECT meta, downloads FROM packages").fetchall()
        )
        return [(PackageMeta.model_validate_json(meta), downloads) for meta, downloads in rows]

    async def name_records(self) -> list[NameRecord]:
        rows = await self._run(lambda db: db.execute("SELECT body FROM name_records").fetchall())
        return [NameRecord.model_validate_json(body) for (body,) in rows]

    async def providers(self, *, now_wall: float) -> list[ProviderRow]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT package_id, peer_id, address, expires_at, updated FROM providers"
                " WHERE expires_at > ?",
                (now_wall,),
            ).fetchall()
        )
        return [ProviderRow(*row) for row in rows]

    async def prune_providers(self, *, now_wall: float) -> int:
        """Delete expired provider records; returns how many."""
        return await self._run(
            lambda db: (
                db.execute("DELETE FROM providers WHERE expires_at <= ?", (now_wall,)).rowcount
            )
        )

    async def add_downloads(self, package_id: str, count: int = 1) -> int:
        def bump(db: sqlite3.Connection) -> int:
            db.execute(
                "UPDATE packages SET downloads = downloads + ? WHERE id = ?", (count, package_id)
            )
            row = db.execute(
                "SELECT downloads FROM packages WHERE id = ?", (package_id,)
            ).fetchone()
            return int(row[0]) if row else 0

        return await self._run(bump)

    async def get_kv(self, key: str) -> str | None:
        row = await self._run(
            lambda db: db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        )
        return str(row[0]) if row else None

    async def set_kv(self, key: str, value: str) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO kv(key, value) VALUES(?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        )


def _answer(waiter: asyncio.Future[Applied | None], outcome: Applied | Exception | None) -> None:
    if waiter.done():
        return
    if isinstance(outcome, Exception):
        waiter.set_exception(outcome)
    else:
        waiter.set_result(outcome)


def _apply_all(
    db: sqlite3.Connection, anns: list[tuple[Announcement, float]]
) -> list[Applied | None]:
    out: list[Applied | None] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for ann, now_wall in anns:
            out.append(_apply_one(db, ann, now_wall))
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise
    return out


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already (it does on SQLITE_FULL
    and some I/O errors; a second ROLLBACK would raise and hide the first error)."""
    if db.in_transaction:
        db.execute("ROLLBACK")


def _apply_one(db: sqlite3.Connection, ann: Announcement, now_wall: float) -> Applied | None:
    subject = _provider_subject(ann)
    adds = ann.provider if ann.kind is not AnnouncementKind.PROVIDER_REMOVED else None
    stale = adds is not None and _superseded(db, adds.peer_id, adds.package_id, ann.created)
    if stale and ann.kind is AnnouncementKind.PROVIDER_ADDED:
        return None  # late gossip of a record its peer already took back: nothing to keep
    cur = db.execute(
        "INSERT OR IGNORE INTO changes(ann_id, body, kind, peer, package, created)"
        " VALUES(?, ?, ?, ?, ?, ?)",
        (ann.id, ann.model_dump_json(by_alias=True), ann.kind.value, *subject, ann.created),
    )
    if cur.rowcount == 0:
        return None
    seq = int(cur.lastrowid or 0)
    _compact(db, ann, subject)
    new_package = False
    if ann.kind in PACKAGE_KINDS and ann.package is not None:
        meta = ann.package
        cur = db.execute(
            "INSERT OR IGNORE INTO packages(id, meta, seq) VALUES(?, ?, ?)",
            (meta.id, meta.model_dump_json(by_alias=True), seq),
        )
        new_package = cur.rowcount > 0
    if ann.record is not None:
        db.execute(
            "INSERT OR IGNORE INTO name_records(id, name, body) VALUES(?, ?, ?)",
            (ann.record.id, ann.record.name, ann.record.model_dump_json(by_alias=True)),
        )
    if adds is not None and not stale:
        rec = adds
        db.execute(
            "INSERT INTO providers(package_id, peer_id, address, expires_at, updated)"
            " VALUES(?, ?, ?, ?, ?)"
            " ON CONFLICT(package_id, peer_id) DO UPDATE SET address = excluded.address,"
            " expires_at = excluded.expires_at, updated = excluded.updated"
            " WHERE excluded.updated >= providers.updated",
            (rec.package_id, rec.peer_id, rec.address, now_wall + rec.ttl_seconds, ann.created),
        )
    if ann.kind is AnnouncementKind.PROVIDER_REMOVED and ann.provider is not None:
        db.execute(
            "DELETE FROM providers WHERE package_id = ? AND peer_id = ? AND updated <= ?",
            (ann.provider.package_id, ann.provider.peer_id, ann.created),
        )
    if ann.kind is AnnouncementKind.PEER_LEAVING:
        db.execute(
            "DELETE FROM providers WHERE peer_id = ? AND updated <= ?", (ann.origin, ann.created)
        )
    return Applied(seq=seq, new_package=new_package, provider=adds is not None and not stale)


def _superseded(db: sqlite3.Connection, peer: str, package: str, created: int) -> bool:
    """Has `peer` already said something newer about providing `package`: a later record,
    or a `provider_removed` or `peer_leaving` dated at or after `created` (a removal wins
    its second, whichever arrives first)? Then a record dated `created` is late gossip and
    must not come back, whatever the order it arrives in (the change log keeps the newest
    provider state of each subject, `_compact`)."""
    return (
        db.execute(
            "SELECT 1 FROM changes WHERE peer = ? AND package IN (?, '')"
            " AND (created > ? OR (created = ? AND kind != 'provider_added')) LIMIT 1",
            (peer, package, created, created),
        ).fetchone()
        is not None
    )


def _provider_subject(ann: Announcement) -> tuple[str | None, str | None]:
    """(peer, package) of announcements that only carry provider state, else (None, None)."""
    if ann.kind.value in _PROVIDER_KINDS and ann.provider is not None:
        return ann.provider.peer_id, ann.provider.package_id
    if ann.kind is AnnouncementKind.PEER_LEAVING:
        return ann.origin, ""
    return None, None


def _compact(
    db: sqlite3.Connection, ann: Announcement, subject: tuple[str | None, str | None]
) -> None:
    """Keep the change log bounded: only the newest provider-state announcement per
    (peer, package) stays (republishing every TTL/3 would otherwise grow it forever), and a
    peer's `peer_leaving` supersedes all of its older provider announcements. Package
    announcements are never removed. Gaps in `seq` are fine for sync and subscribe."""
    peer, package = subject
    if peer is None:
        return
    newest = db.execute(
        "SELECT seq FROM changes WHERE peer = ? AND package = ?"
        " ORDER BY created DESC, seq DESC LIMIT 1",
        (peer, package),
    ).fetchone()[0]
    db.execute(
        "DELETE FROM changes WHERE peer = ? AND package = ? AND seq != ?", (peer, package, newest)
    )
    if ann.kind is AnnouncementKind.PEER_LEAVING:
        db.execute(
            "DELETE FROM changes WHERE peer = ? AND package != '' AND created <= ?",
            (peer, ann.created),
        )
