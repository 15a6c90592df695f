"""Copies on two in-process nodes: a small package's bytes travel with the `replicate`, a
large one is fetched from the peer that asked; bytes that contradict the signed digest are
refused and kept nowhere. The store commits concurrent announcements together and finds
the announcement that brought a package (what a repair sends along)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path

import aiohttp
import pytest
from marketplace_node import limits
from marketplace_node.config import NodeSettings
from marketplace_node.model import ReplicateRequest
from marketplace_node.service import NodeService
from marketplace_node.store import Store
from marketplace_protocol.clock import SystemClock
from marketplace_protocol.errors import InvalidInput
from pydantic import ValidationError

from tests.support.net import free_port
from tests.support.node_server import serving
from tests.support.signed import (
    PUBLISHER,
    package,
    package_announcement,
    provider_announcement,
)


def fetched(service: NodeService) -> float:
    """Fetches of content from providers this node made, whatever their outcome."""
    return sum(
        sample.value
        for metric in service.metrics.fetches.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def two_copies(data_dir: Path) -> NodeSettings:
    return NodeSettings(data_dir=data_dir, port=free_port(), replication_factor=2, min_in_sync=2)


async def test_a_copy_carries_small_bytes_and_fetches_large_ones_from_the_publisher(
    tmp_path: Path,
) -> None:
    async with (
        serving(two_copies(tmp_path / "a")) as a,
        serving(two_copies(tmp_path / "b")) as b,
    ):
        a.service.peers.seen(b.service.identity.peer_id, b.service.settings.public_url, 0.0)
        async with aiohttp.ClientSession() as http:
            for size, fetches in (
                (limits.INLINE_CONTENT_MAX, 0),
                (limits.INLINE_CONTENT_MAX + 1, 1),
            ):
                content = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
                digest = hashlib.sha256(content).hexdigest()
                meta = package(f"sized-{size}", content=content, created=int(SystemClock().wall()))
                put = await http.put(a.public.make_url(f"/api/v1/blobs/{digest}"), data=content)
                assert put.status == 201
                published = await http.post(
                    a.public.make_url("/api/v1/packages"), data=meta.model_dump_json(by_alias=True)
                )
                assert published.status == 201, await published.text()
                # Answered only once b holds the verified bytes and knows the package.
                assert b.service.blobs.path(digest).read_bytes() == content
                assert b.service.catalogue.get(meta.id) == meta
                assert fetched(b.service) == fetches, size


async def test_bytes_sent_with_a_copy_that_contradict_the_digest_are_refused(
    tmp_path: Path,
) -> None:
    async with serving(NodeSettings(data_dir=tmp_path, port=0)) as node:
        meta = package("forged", content=b"genuine", created=int(SystemClock().wall()))
        ann = package_announcement(meta, created=meta.created or 0)
        with pytest.raises(InvalidInput, match="does not hash"):
            await node.service.replicate(meta.id, ann, b"other!!", sender=ann.origin)
        assert not node.service.blobs.has(meta.digest)
        await node.service.replicate(meta.id, ann, b"genuine", sender=ann.origin)
        assert node.service.blobs.path(meta.digest).read_bytes() == b"genuine"


def test_content_sent_inline_is_bounded_and_travels_as_base64() -> None:
    request = ReplicateRequest(package_id="a" * 32, content=b"\x00\xff")
    wire = request.model_dump_json(by_alias=True, exclude_none=True)
    assert wire == '{"packageId":"' + "a" * 32 + '","content":"AP8="}'
    assert ReplicateRequest.model_validate_json(wire) == request
    with pytest.raises(ValidationError, match="at most"):
        ReplicateRequest(package_id="a" * 32, content=bytes(limits.INLINE_CONTENT_MAX + 1))


async def test_concurrent_announcements_commit_together_each_answered(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    await store.open()
    metas = [package(f"p{i}", content=f"c{i}".encode()) for i in range(20)]
    anns = [package_announcement(m) for m in metas]
    results = await asyncio.gather(*(store.apply(a, now_wall=0) for a in [*anns, anns[0]]))
    seqs = [r.seq for r in results[:-1] if r is not None]
    assert sorted(seqs) == list(range(1, 21))
    assert results[-1] is None  # the same announcement twice: applied once
    found = await store.announcements_of([metas[3].id, "f" * 32, metas[7].id])
    assert found == {metas[3].id: anns[3], metas[7].id: anns[7]}
    provider_only = provider_announcement(metas[0].id, PUBLISHER)  # no package: not its origin
    assert await store.apply(provider_only, now_wall=0) is not None
    assert await store.announcements_of([metas[0].id]) == {metas[0].id: anns[0]}
    await store.close()
    reopened = Store(tmp_path / "db")
    await reopened.open()
    assert len(await reopened.packages()) == 20
    await reopened.close()


async def test_a_provider_record_is_re_announced_only_past_a_third_of_its_life(
    tmp_path: Path,
) -> None:
    settings = NodeSettings(data_dir=tmp_path, port=0, replication_factor=1, min_in_sync=1)
    async with serving(settings) as node, aiohttp.ClientSession() as http:
        service = node.service
        content = b"held here"
        meta = package("kept", content=content, created=int(SystemClock().wall()))
        put = await http.put(node.public.make_url(f"/api/v1/blobs/{meta.digest}"), data=content)
        assert put.status == 201
        published = await http.post(
            node.public.make_url("/api/v1/packages"), data=meta.model_dump_json(by_alias=True)
        )
        assert published.status == 201
        assert await service.republish_once() == 0  # announced with the publish just now
        (mine,) = service.providers.live(meta.id, service.clock.wall())
        ttl = settings.provider_ttl_seconds
        service.providers.set(dataclasses.replace(mine, expires_at=service.clock.wall() + ttl / 2))
        assert await service.republish_once() == 1
        assert await service.republish_once() == 0
