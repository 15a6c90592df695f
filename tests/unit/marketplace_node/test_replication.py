"""Copies on two in-process nodes: a small package's bytes travel with the `replicate`, a
large one is fetched from the peer that asked; bytes that contradict the signed digest are
refused and kept nowhere. The store commits concurrent announcements together and finds
the announcement that brought a package (what a repair sends along)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from marketplace_node import limits, replication
from marketplace_node.config import NodeSettings
from marketplace_node.model import Announcement, ReplicateRequest
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


OLD_RELEASE_REFUSAL = {  # what a node of the release before inline copies answers, verbatim
    "code": "invalid_input",
    "message": "1 validation error: content: Extra inputs are not permitted",
    "retryable": False,
    "details": {},
}


@contextlib.asynccontextmanager
async def copy_refusing_inline(
    refusal: dict[str, object], tmp_path: Path
) -> AsyncIterator[tuple[NodeService, list[list[str]]]]:
    """A node (its service) whose one peer, "copy", answers a `replicate` carrying bytes with
    `refusal` (400) and one without them with success; the fields of each request it got."""
    asked: list[list[str]] = []

    async def replicate(request: web.Request) -> web.Response:
        body = await request.json()
        asked.append(sorted(body))
        if "content" in body:
            return web.json_response(refusal, status=400)
        return web.json_response({"replicated": True})

    app = web.Application()
    app.router.add_post("/p2p/v1/replicate", replicate)
    copy = TestServer(app, host="127.0.0.1")
    await copy.start_server()
    try:
        async with serving(two_copies(tmp_path)) as node:
            node.service.peers.seen("copy", str(copy.make_url("")).rstrip("/"), 0.0)
            yield node.service, asked
    finally:
        await copy.close()


async def held(service: NodeService, name: str) -> Announcement:
    """A small package whose bytes `service` holds, and its announcement."""
    content = name.encode()
    meta = package(name, content=content, created=int(SystemClock().wall()))
    await service.blobs.write(_once(content), digest=meta.digest, max_size=meta.size)
    return package_announcement(meta, created=meta.created or 0)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_copy_of_an_earlier_release_is_asked_again_without_the_bytes(
    tmp_path: Path,
) -> None:
    """A node of a release before inline copies refuses a `replicate` that carries bytes
    with its strict model's 400; the origin asks it again in the old form (the copy fetches
    the bytes), and for a while asks it only in that form."""
    async with copy_refusing_inline(OLD_RELEASE_REFUSAL, tmp_path) as (service, asked):
        for name in ("first", "second"):
            ann = await held(service, name)
            assert ann.package is not None
            assert await replication.copy_to(service, ann.package.id, ["copy"], 1, ann) == 1
    assert asked == [
        ["announcement", "content", "packageId"],  # refused
        ["announcement", "packageId"],  # asked again: the old release fetches the bytes
        ["announcement", "packageId"],  # the next copy: the old form at once
    ]


async def test_other_refusals_of_a_copy_are_not_retried_in_the_old_form(tmp_path: Path) -> None:
    mismatch = OLD_RELEASE_REFUSAL | {
        "message": "the content sent does not hash to the package's digest"
    }
    async with copy_refusing_inline(mismatch, tmp_path) as (service, asked):
        ann = await held(service, "refused")
        assert ann.package is not None
        assert await replication.copy_to(service, ann.package.id, ["copy"], 1, ann) == 0
    assert asked == [["announcement", "content", "packageId"]]
