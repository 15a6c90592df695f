"""SQLite store and blob store: durability across reopen, idempotence, ordering, safe blobs."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from marketplace_node import blobs as blobs_module
from marketplace_node import sealing
from marketplace_node.blobs import BlobStore
from marketplace_node.model import Announcement, AnnouncementKind
from marketplace_node.store import SCHEMA_VERSION, Store, migrate
from marketplace_protocol import identity
from marketplace_protocol.errors import IntegrityError, PayloadTooLarge

from tests.support.signed import PUBLISHER, package, package_announcement, provider_announcement


async def test_applied_announcements_survive_reopen_and_replays_are_ignored(tmp_path: Path) -> None:
    meta = package()
    ann = package_announcement(meta)
    store = Store(tmp_path / "db")
    await store.open()
    first = await store.apply(ann, now_wall=0)
    assert first is not None
    assert (first.new_package, first.seq) == (True, 1)
    assert await store.apply(ann, now_wall=0) is None
    await store.close()

    reopened = Store(tmp_path / "db")
    await reopened.open()
    assert [m.id for m, _ in await reopened.packages()] == [meta.id]
    assert await reopened.last_seq() == 1
    assert [seq for seq, _ in await reopened.changes_after(0, 10)] == [1]
    await reopened.close()


async def test_an_older_provider_announcement_never_overrides_a_newer_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    await store.open()
    pid = package().id
    await store.apply(provider_announcement(pid, PUBLISHER, created=200), now_wall=0)
    await store.apply(
        provider_announcement(pid, PUBLISHER, kind=AnnouncementKind.PROVIDER_REMOVED, created=100),
        now_wall=0,
    )
    assert [r.peer_id for r in await store.providers(now_wall=0)] == [PUBLISHER.peer_id]
    await store.apply(
        provider_announcement(pid, PUBLISHER, kind=AnnouncementKind.PROVIDER_REMOVED, created=300),
        now_wall=0,
    )
    assert await store.providers(now_wall=0) == []
    await store.close()


async def test_provider_records_expire(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    await store.open()
    await store.apply(provider_announcement(package().id, PUBLISHER), now_wall=1_000)
    assert len(await store.providers(now_wall=1_059)) == 1
    assert await store.providers(now_wall=1_061) == []
    await store.close()


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_blob_is_kept_only_when_its_digest_matches(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    blobs.prepare()
    data = b"hello world"
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(IntegrityError):
        await blobs.write(_chunks(b"hello", b" mars!"), digest=digest, max_size=100)
    assert not blobs.has(digest)
    assert list(blobs.root.iterdir()) == []
    assert await blobs.write(_chunks(b"hello", b" world"), digest=digest, max_size=100) == len(data)
    assert blobs.path(digest).read_bytes() == data


@pytest.mark.parametrize("tail", [b"", b"!"])
async def test_blob_over_several_batches_is_kept_only_when_its_digest_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tail: bytes
) -> None:
    """Larger than a batch: written batch by batch, the last one with the fsync and rename."""
    monkeypatch.setattr(blobs_module, "BATCH", 4)
    blobs = BlobStore(tmp_path / "blobs")
    blobs.prepare()
    parts = (b"abc", b"defgh", b"ijklmnop", tail)
    data = b"".join(parts)
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(IntegrityError):
        await blobs.write(_chunks(*parts, b"?"), digest=digest, max_size=100)
    assert list(blobs.root.iterdir()) == []
    assert await blobs.write(_chunks(*parts), digest=digest, max_size=100) == len(data)
    assert blobs.path(digest).read_bytes() == data
    assert [p.name for p in blobs.root.iterdir()] == [digest]


async def test_blob_larger_than_allowed_is_refused_midstream(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    blobs.prepare()
    with pytest.raises(PayloadTooLarge):
        await blobs.write(_chunks(b"x" * 10, b"y" * 10), digest="0" * 64, max_size=15)
    assert list(blobs.root.iterdir()) == []


def test_prepare_removes_leftovers_of_a_crash(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    root.mkdir()
    (root / "abc.tmp").write_bytes(b"half")
    BlobStore(root).prepare()
    assert list(root.iterdir()) == []


async def test_the_change_log_keeps_only_the_newest_provider_state(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    await store.open()
    meta = package("kept")
    other = identity.Identity.generate()
    await store.apply(package_announcement(meta), now_wall=0)
    for created in (100, 300, 200):  # republished, one copy arriving late
        await store.apply(provider_announcement(meta.id, other, created=created), now_wall=0)
    kinds = [Announcement.model_validate_json(b) for _, b in await store.changes_after(0, 100)]
    assert [(a.kind, a.created) for a in kinds] == [
        (AnnouncementKind.PACKAGE, 100),
        (AnnouncementKind.PROVIDER_ADDED, 300),
    ]
    leaving = sealing.announce(other, AnnouncementKind.PEER_LEAVING, created=400)
    await store.apply(leaving, now_wall=0)
    kinds = [Announcement.model_validate_json(b) for _, b in await store.changes_after(0, 100)]
    assert [a.kind for a in kinds] == [AnnouncementKind.PACKAGE, AnnouncementKind.PEER_LEAVING]
    assert await store.providers(now_wall=0) == []
    await store.close()


async def test_an_old_database_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " ann_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL)"
    )
    old.commit()
    old.close()
    store = Store(path)
    await store.open()
    assert await store.apply(package_announcement(package("after")), now_wall=0) is not None
    await store.close()


async def test_a_store_of_an_earlier_release_upgrades_in_place(tmp_path: Path) -> None:
    """A store written before `user_version` (old columns missing, node-signed packages)
    opens, gains the new tables, and its packages stay readable, marked as node-signed."""
    legacy = package("old-tool", "1.0", created=None)
    path = tmp_path / "catalogue.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " ann_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL);"
        "CREATE TABLE packages (id TEXT PRIMARY KEY, meta TEXT NOT NULL,"
        " downloads INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL);"
    )
    db.execute(
        "INSERT INTO packages(id, meta, downloads, seq) VALUES(?, ?, 7, 1)",
        (legacy.id, legacy.model_dump_json(by_alias=True)),
    )
    db.commit()
    db.close()
    store = Store(path)
    await store.open()
    try:
        [(meta, downloads)] = await store.packages()
        assert (meta, downloads, meta.signed_by) == (legacy, 7, "node")
        assert await store.name_records() == []
    finally:
        await store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
    reopened = Store(path)
    await reopened.open()  # nothing left to run
    await reopened.close()


def test_a_store_newer_than_the_program_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        migrate(db)


def test_a_failing_step_leaves_the_store_at_the_last_whole_version(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    migrate(db)
    db.execute("PRAGMA user_version = 1")  # as if step 2 had never run, but its table exists
    with pytest.raises(sqlite3.OperationalError):
        migrate(db)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
