"""A full data volume: typed refusals (507 `storage_full`), nothing half-written, nothing
acknowledged lost, and service again once space returns (`disk`, `store`, `blobs`)."""

from __future__ import annotations

import errno
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from marketplace_node import blobs as blobs_module
from marketplace_node.blobs import BlobStore
from marketplace_node.config import NodeSettings
from marketplace_node.disk import RESERVE_MAX, DataVolume, Usage, storage_full_from
from marketplace_node.peer_client import PeerClient
from marketplace_node.store import Store
from marketplace_protocol import identity
from marketplace_protocol.clock import FakeClock, SystemClock
from marketplace_protocol.errors import StorageFull, UpstreamFailed
from pydantic import SecretStr

from tests.support.node_server import serving
from tests.support.signed import package, package_announcement

MIB = 1024 * 1024


class Space:
    """A volume whose free bytes the test sets."""

    def __init__(self, total: int, free: int) -> None:
        self.total, self.free = total, free

    def __call__(self, _: Path) -> Usage:
        return Usage(self.total, self.free)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_the_reserve_is_five_percent_of_the_volume_capped() -> None:
    assert DataVolume.reserve(64 * MIB) == int(3.2 * MIB)
    assert DataVolume.reserve(10**12) == RESERVE_MAX


def test_content_that_would_eat_into_the_reserve_is_refused(tmp_path: Path) -> None:
    space = Space(total=100 * MIB, free=10 * MIB)  # reserve 5 MiB
    volume = DataVolume(tmp_path, usage=space)
    volume.admit(4 * MIB)
    with pytest.raises(StorageFull) as refused:
        volume.admit(6 * MIB)
    assert (refused.value.code, refused.value.http_status) == ("storage_full", 507)
    assert not volume.full()
    space.free = 4 * MIB
    assert volume.full()
    space.free = 50 * MIB  # space returns: full clears by itself
    assert not volume.full()


def test_an_unmeasurable_volume_refuses_nothing(tmp_path: Path) -> None:
    def broken(_: Path) -> Usage:
        raise OSError(errno.EIO, "no")

    volume = DataVolume(tmp_path, usage=broken)
    volume.admit(10 * MIB)
    assert not volume.full()


def test_only_a_want_of_space_is_storage_full() -> None:
    assert storage_full_from(OSError(errno.ENOSPC, "full")) is not None
    assert storage_full_from(OSError(errno.EDQUOT, "quota")) is not None
    assert storage_full_from(OSError(errno.EIO, "io")) is None
    assert storage_full_from(ValueError("x")) is None
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = OSError(errno.ENOSPC, "full")
    assert storage_full_from(wrapped) is not None


async def test_a_full_catalogue_refuses_typed_and_keeps_what_it_acknowledged(
    tmp_path: Path,
) -> None:
    """SQLite's own SQLITE_FULL, made with a page cap: the failing transaction is gone
    whole, every earlier one is kept, and the store works again once it may grow."""
    store = Store(tmp_path / "db")
    await store.open()
    pages = await store._run(lambda db: int(db.execute("PRAGMA page_count").fetchone()[0]))
    await store._run(lambda db: db.execute(f"PRAGMA max_page_count = {pages + 2}"))
    kept = []

    async def fill() -> None:
        for i in range(1_000):
            meta = package(f"p{i}", description="x" * 2_000)
            await store.apply(package_announcement(meta), now_wall=0)
            kept.append(meta.id)

    with pytest.raises(StorageFull):
        await fill()
    assert kept, "the cap left no room at all"
    assert {m.id for m, _ in await store.packages()} == set(kept)
    await store._run(lambda db: db.execute("PRAGMA max_page_count = 1000000"))
    late = package("late")
    assert await store.apply(package_announcement(late), now_wall=0) is not None
    await store.close()
    reopened = Store(tmp_path / "db")
    await reopened.open()
    assert {m.id for m, _ in await reopened.packages()} == {*kept, late.id}
    await reopened.close()


async def test_a_blob_the_disk_has_no_room_for_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = BlobStore(tmp_path / "blobs", DataVolume(tmp_path, usage=Space(100 * MIB, 90 * MIB)))
    blobs.prepare()
    data = b"hello world"
    digest = hashlib.sha256(data).hexdigest()

    def no_room(fd: int, data: bytes, hasher: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(blobs_module, "_write_and_hash", no_room)
    with pytest.raises(StorageFull):
        await blobs.write(_chunks(data), digest=digest, max_size=100)
    assert list(blobs.root.iterdir()) == []
    monkeypatch.undo()
    assert await blobs.write(_chunks(data), digest=digest, max_size=100) == len(data)


async def test_a_full_node_refuses_publishes_507_serves_reads_says_so_and_recovers(
    tmp_path: Path,
) -> None:
    settings = NodeSettings(data_dir=tmp_path, port=0, admin_token=SecretStr("s3cret"))
    space = Space(total=64 * MIB, free=32 * MIB)
    async with serving(settings) as (public, service, private):
        service.volume = DataVolume(tmp_path, usage=space)
        service.blobs.volume = service.volume
        author = identity.Identity.generate()
        admin = {"Authorization": "Bearer s3cret"}
        async with aiohttp.ClientSession() as http:

            async def publish(name: str, content: bytes) -> tuple[int, dict[str, object]]:
                digest = hashlib.sha256(content).hexdigest()
                put = await http.put(public.make_url(f"/api/v1/blobs/{digest}"), data=content)
                if put.status != 201:
                    return put.status, await put.json()
                meta = package(name, content=content, publisher=author,
                               created=int(SystemClock().wall()))  # fmt: skip
                done = await http.post(
                    public.make_url("/api/v1/packages"), data=meta.model_dump_json(by_alias=True)
                )
                return done.status, await done.json()

            async def node_status() -> dict[str, object]:
                got = await http.get(private.make_url("/admin/v1/status"), headers=admin)
                return dict(await got.json())

            status, held = await publish("held", b"held bytes")
            assert status == 201
            # The disk fills: below the reserve, and the catalogue cannot grow either.
            space.free = 1 * MIB
            pages = await service.store._run(
                lambda db: int(db.execute("PRAGMA page_count").fetchone()[0])
            )
            await service.store._run(lambda db: db.execute(f"PRAGMA max_page_count = {pages}"))
            status, body = await publish("refused", b"new bytes")
            assert (status, body["code"], body["retryable"]) == (507, "storage_full", True)
            assert (await node_status())["storageFull"] is True
            metrics = await (await http.get(private.make_url("/metrics"))).text()
            assert "marketplace_node_storage_full 1.0" in metrics
            assert (await http.get(private.make_url("/readyz"))).status == 200

            async def no_room(package_id: str, count: int = 1) -> int:
                # The WAL append of the count fails (ENOSPC): a page cap cannot make that.
                raise StorageFull("the data volume is full")

            counting = service.store.add_downloads
            service.store.add_downloads = no_room  # type: ignore[method-assign]
            read = await http.get(public.make_url(f"/api/v1/packages/{held['id']}/content"))
            assert (read.status, await read.read()) == (200, b"held bytes")  # reads go on
            assert (
                "marketplace_node_downloads_uncounted_total 1.0"
                in await (await http.get(private.make_url("/metrics"))).text()
            )

            service.store.add_downloads = counting  # type: ignore[method-assign]
            space.free = 32 * MIB  # space returns
            await service.store._run(lambda db: db.execute("PRAGMA max_page_count = 1000000"))
            assert (await publish("refused", b"new bytes"))[0] == 201
            assert "storageFull" not in await node_status()


def test_sqlite_full_is_recognised_by_its_code() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (x TEXT)")
    db.execute("PRAGMA max_page_count = 2")

    def fill() -> None:
        for _ in range(100):
            db.execute("INSERT INTO t VALUES (?)", ("x" * 4096,))

    with pytest.raises(sqlite3.Error) as caught:
        fill()
    assert storage_full_from(caught.value) is not None


async def test_a_peer_whose_disk_is_full_keeps_its_circuit_closed() -> None:
    """507 is an answer from a live peer that still serves what it holds; 503 is trouble."""
    async with aiohttp.ClientSession() as session:
        client = PeerClient(session, identity.Identity.generate(), FakeClock(), timeout=1.0)
        for _ in range(20):
            client._health("http://full", 507)
            client._health("http://sick", 503)
        client.breakers.check("http://full")
        with pytest.raises(UpstreamFailed):
            client.breakers.check("http://sick")


async def test_a_catalogue_that_cannot_open_for_want_of_space_says_so(tmp_path: Path) -> None:
    """SQLite says "disk I/O error" when a full volume cannot take the WAL index: the
    volume's free space tells that apart from other failures to open."""
    (tmp_path / "db").mkdir()  # sqlite cannot open a directory: a stand-in failure
    full = Store(tmp_path / "db", DataVolume(tmp_path, usage=Space(64 * MIB, 0)))
    with pytest.raises(StorageFull):
        await full.open()
    roomy = Store(tmp_path / "db", DataVolume(tmp_path, usage=Space(64 * MIB, 32 * MIB)))
    with pytest.raises(sqlite3.Error):
        await roomy.open()
