"""A node reborn on an empty disk: provider records its old incarnation made in the second
its `peer_leaving` cannot cover are taken back (`provider_removed`) as soon as it learns
them, whatever the order peers see the two in; a copy it takes afterwards is announced
after the retraction; a record that its peer already took back never comes back."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from marketplace_node import sealing
from marketplace_node.config import NodeSettings
from marketplace_node.model import Announcement, AnnouncementKind, ProviderRecord
from marketplace_node.service import NodeService
from marketplace_node.store import Store
from marketplace_protocol import identity

from tests.support.node_server import serving
from tests.support.signed import package, package_announcement, provider_announcement


async def ours(service: NodeService, kind: AnnouncementKind) -> list[Announcement]:
    """Announcements of `kind` that `service` signed, from its change log."""
    anns = [
        Announcement.model_validate_json(body)
        for _, body in await service.store.changes_after(0, 1000)
    ]
    return [a for a in anns if a.kind is kind and a.origin == service.identity.peer_id]


async def retractions(service: NodeService) -> list[Announcement]:
    for _ in range(100):  # the retraction is committed in the background
        found = await ours(service, AnnouncementKind.PROVIDER_REMOVED)
        if found:
            return found
        await asyncio.sleep(0.05)
    return []


def record_of(service: NodeService, package_id: str, created: int) -> Announcement:
    """A provider record signed with the node's key: its old incarnation's."""
    record = ProviderRecord(
        package_id=package_id,
        peer_id=service.identity.peer_id,
        address=service.settings.public_url,
        ttl_seconds=service.settings.provider_ttl_seconds,
    )
    return sealing.announce(
        service.identity, AnnouncementKind.PROVIDER_ADDED, created=created, provider=record
    )


async def providers_at_a_peer(tmp_path: Path, anns: tuple[Announcement, ...]) -> set[str]:
    """Who a peer's store counts as providers after applying `anns` in that order."""
    store = Store(tmp_path / f"peer-{id(anns)}.sqlite3")
    await store.open()
    try:
        for ann in anns:
            await store.apply(ann, now_wall=0)
        return {row.peer_id for row in await store.providers(now_wall=0)}
    finally:
        await store.close()


async def test_a_reborn_node_takes_back_its_old_record_then_announces_its_new_copy(
    tmp_path: Path,
) -> None:
    async with serving(NodeSettings(data_dir=tmp_path / "node", port=0)) as node:
        service = node.service
        assert service.fresh_store
        now = int(service.clock.wall())
        meta = package("held-before", content=b"old bytes", created=now)
        await service.accept(package_announcement(meta, created=now), sender="p", forward=False)
        # The old incarnation's record, made in the second the reborn node started (its
        # `peer_leaving` is dated the second before), arrives by sync.
        old = record_of(service, meta.id, created=now)
        await service.accept(old, sender="p", forward=False)

        (removal,) = await retractions(service)
        sealing.verify_announcement(removal)
        assert removal.provider is not None
        assert removal.provider.package_id == meta.id
        assert removal.created >= old.created
        assert service.providers.live(meta.id, service.clock.wall()) == []  # no copy counted
        for order in itertools.permutations((old, removal)):
            assert await providers_at_a_peer(tmp_path, order) == set(), order

        # A repair copy lands, perhaps in the same second: its record wins over the removal.
        await service.replicate(meta.id, None, b"old bytes", sender="p")
        for _ in range(100):
            added = await ours(service, AnnouncementKind.PROVIDER_ADDED)
            if [a for a in added if a.id != old.id]:
                break
            await asyncio.sleep(0.05)
        (new,) = [a for a in added if a.id != old.id]
        assert new.created > removal.created
        me = service.identity.peer_id
        for order in itertools.permutations((old, removal, new)):
            assert await providers_at_a_peer(tmp_path, order) == {me}, order
        # Its old record gossiped late again is neither taken back again nor counted.
        late = record_of(service, meta.id, created=now)
        await service.accept(late, sender="p", forward=False)
        await asyncio.sleep(0.2)
        assert await ours(service, AnnouncementKind.PROVIDER_REMOVED) == []  # (compacted away)
        assert [r.peer_id for r in service.providers.live(meta.id, service.clock.wall())] == [me]


async def test_a_node_never_takes_back_a_record_of_bytes_it_holds(tmp_path: Path) -> None:
    async with serving(NodeSettings(data_dir=tmp_path / "node", port=0)) as node:
        service = node.service
        now = int(service.clock.wall())
        meta = package("held", content=b"bytes", created=now)
        await service.replicate(
            meta.id, package_announcement(meta, created=now), b"bytes", sender="p"
        )
        echo = record_of(service, meta.id, created=now - 1)  # an older record of ours, relayed
        await service.accept(echo, sender="p", forward=False)
        await asyncio.sleep(0.2)
        assert await ours(service, AnnouncementKind.PROVIDER_REMOVED) == []
        assert service.identity.peer_id in service.live_holders(meta.id)


async def test_a_record_its_peer_already_took_back_never_comes_back(tmp_path: Path) -> None:
    """Late gossip after a `peer_leaving` or `provider_removed` dated at or after it: the
    record is not kept, in any order (a removal wins its second); a later one is."""
    peer = identity.Identity.generate()
    meta = package("p")
    store = Store(tmp_path / "db")
    await store.open()
    await store.apply(
        sealing.announce(peer, AnnouncementKind.PEER_LEAVING, created=400), now_wall=0
    )
    for created in (399, 400):
        assert (
            await store.apply(provider_announcement(meta.id, peer, created=created), now_wall=0)
            is None
        )
    assert await store.providers(now_wall=0) == []
    # A package announcement from before the leaving: the package stays, its record does not.
    published = sealing.announce(
        peer,
        AnnouncementKind.PACKAGE,
        created=400,
        package=meta,
        provider=ProviderRecord(
            package_id=meta.id, peer_id=peer.peer_id, address="http://127.0.0.1:1", ttl_seconds=60
        ),
    )
    applied = await store.apply(published, now_wall=0)
    assert applied is not None
    assert applied.new_package
    assert not applied.provider
    assert await store.providers(now_wall=0) == []
    removed = provider_announcement(
        meta.id, peer, kind=AnnouncementKind.PROVIDER_REMOVED, created=500
    )
    await store.apply(removed, now_wall=0)
    assert await store.apply(provider_announcement(meta.id, peer, created=500), now_wall=0) is None
    assert await store.providers(now_wall=0) == []
    later = await store.apply(provider_announcement(meta.id, peer, created=501), now_wall=0)
    assert later is not None
    assert later.provider
    assert [r.peer_id for r in await store.providers(now_wall=0)] == [peer.peer_id]
    await store.close()
