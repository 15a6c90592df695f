"""Takedowns on one node: the policy's blocks stop serving, publishing, resolving, search,
announcing and copying of what they match, with their provenance; lifting restores it."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from marketplace_node.config import NodeSettings
from marketplace_node.model import AnnouncementKind
from marketplace_node.policy.takedowns import compile_takedowns
from marketplace_protocol import identity
from marketplace_protocol.admin import ContentBlock, PolicyDocument
from marketplace_protocol.clock import SystemClock
from marketplace_protocol.errors import Blocked
from pydantic import SecretStr

from tests.support.node_server import Served, serving
from tests.support.signed import package, provider_announcement

ADMIN = {"Authorization": "Bearer s3cret"}
AUTHOR = identity.Identity.generate()
OTHER = identity.Identity.generate()


def test_a_block_matches_by_digest_version_name_or_publisher_until_it_expires() -> None:
    meta = package("hello-tool", "1.0.0", content=b"x", publisher=AUTHOR)
    sibling = package("hello-tool", "1.1.0", content=b"y", publisher=OTHER)
    cases = [
        (ContentBlock(digest=meta.digest), True, False),
        (ContentBlock(package="hello-tool@1.0.0"), True, False),
        (ContentBlock(name="hello-tool"), True, True),
        (ContentBlock(publisher=AUTHOR.peer_id), True, False),
        (ContentBlock(name="hello"), False, False),
    ]
    for block, first, second in cases:
        takedowns = compile_takedowns([block])
        assert (takedowns.match(meta, now_wall=0) is not None) is first, block
        assert (takedowns.match(sibling, now_wall=0) is not None) is second, block
    timed = compile_takedowns([ContentBlock(name="hello-tool", expires_at=datetime.fromtimestamp(
        1_000, UTC))])  # fmt: skip
    assert timed.match(meta, now_wall=999) is not None
    assert timed.match(meta, now_wall=1_000) is None


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Served]:
    settings = NodeSettings(data_dir=tmp_path, port=0, admin_token=SecretStr("s3cret"))
    async with serving(settings) as running:
        yield running


async def test_a_takedown_stops_serving_and_lifting_it_restores(
    node: Served,
) -> None:
    server, service, private = node
    now = int(SystemClock().wall())
    metas = {
        (name, version, who.peer_id): package(
            name, version, content=f"{name}{version}".encode(), publisher=who, created=now
        )
        for name, version, who in (
            ("hello-tool", "1.0.0", AUTHOR),
            ("hello-tool", "1.1.0", AUTHOR),
            ("other", "1.0.0", OTHER),
        )
    }
    old, new, other = metas.values()
    async with aiohttp.ClientSession() as http:

        async def call(method: str, path: str, **kw: Any) -> tuple[int, Any]:
            listener = private if path.startswith(("/admin/", "/metrics")) else server
            resp = await http.request(method, listener.make_url(path), **kw)
            body = await resp.read()
            return resp.status, (await resp.json()) if resp.content_type == "application/json" \
                else body  # fmt: skip

        async def policy(version: int, *blocks: dict[str, str]) -> None:
            doc = {"version": version, "blocks": list(blocks)}
            assert (await call("PUT", "/admin/v1/policy", json=doc, headers=ADMIN))[0] == 200

        for (name, version, _), meta in metas.items():
            content = f"{name}{version}".encode()
            digest = hashlib.sha256(content).hexdigest()
            assert (await call("PUT", f"/api/v1/blobs/{digest}", data=content))[0] == 201
            body = meta.model_dump_json(by_alias=True)
            assert (await call("POST", "/api/v1/packages", data=body))[0] == 201

        await policy(1, {"package": "hello-tool@1.1.0", "reason": "malware",
                         "source": "banlist/abuse"})  # fmt: skip
        status, error = await call("GET", f"/api/v1/packages/{new.id}")
        assert (status, error["code"]) == (451, "blocked")
        assert error["details"]["source"] == "banlist/abuse"
        assert error["details"]["reason"] == "malware"
        assert (await call("GET", f"/api/v1/packages/{new.id}/content"))[0] == 451
        status, latest = await call("GET", "/api/v1/names/hello-tool/resolve")
        assert (status, latest["package"]["version"]) == (200, "1.0.0")  # passes over it
        exact = await call("GET", "/api/v1/names/hello-tool/resolve", params={"want": "1.1.0"})
        assert exact[0] == 451
        status, found = await call("GET", "/api/v1/search", params={"q": "hello"})
        assert all(r["id"] != new.id for r in found["results"])
        assert not service.serves_digest(new.digest)
        assert service.serves_digest(old.digest)

        await policy(2, {"publisher": OTHER.peer_id, "source": "banlist/spam"})
        assert (await call("GET", f"/api/v1/packages/{other.id}/content"))[0] == 451
        again = package("other", "2.0.0", content=b"other1.0.0", publisher=OTHER, created=now)
        status, error = await call("POST", "/api/v1/packages", data=again.model_dump_json(
            by_alias=True))  # fmt: skip
        assert (status, error["code"]) == (451, "blocked")
        assert (await call("GET", f"/api/v1/packages/{new.id}"))[0] == 200  # lifted
        metrics = (await call("GET", "/metrics"))[1].decode()
        total = "marketplace_node_takedown_refusals_total"
        assert [m for m in metrics.splitlines() if m.startswith(total)] == [f"{total} 5.0"]

        await policy(3)
        assert (await call("GET", f"/api/v1/packages/{other.id}/content"))[0] == 200


async def test_a_node_neither_announces_nor_copies_what_was_taken_down(
    node: Served,
) -> None:
    _, service, _ = node
    meta = package("evil", "1.0.0", publisher=AUTHOR, created=int(SystemClock().wall()))
    service.enforcer.apply(PolicyDocument(version=1, blocks=[ContentBlock(name="evil")]))
    ann = provider_announcement(meta.id, AUTHOR, kind=AnnouncementKind.PROVIDER_ADDED)
    service.catalogue.add(meta)
    assert service._announces_blocked(ann)
    with pytest.raises(Blocked, match="taken down"):
        await service.replicate(meta.id, None, None, sender=OTHER.peer_id)
