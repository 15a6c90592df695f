"""Anti-entropy against a fake peer log: paging, cursors, a peer that lost its log, forgeries."""

from __future__ import annotations

import asyncio
import random
import types
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from marketplace_node import sync
from marketplace_node.config import NodeSettings
from marketplace_node.metrics import NodeMetrics
from marketplace_node.model import Announcement, Change, ChangePage
from marketplace_node.peers import Peer
from marketplace_node.service import NodeService
from marketplace_protocol import identity
from marketplace_protocol.clock import FakeClock
from prometheus_client import CollectorRegistry

from tests.support.signed import package, package_announcement, provider_announcement

PAGE = 2


class FakePeerLog:
    """Serves a change log in pages of `PAGE`, as `GET /p2p/v1/changes` would."""

    def __init__(self, announcements: list[Announcement]) -> None:
        self.log = list(announcements)
        self.asked: list[int] = []

    async def request(
        self, method: str, address: str, path: str, *, params: dict[str, str]
    ) -> bytes:
        after = int(params["after"])
        self.asked.append(after)
        page = [Change(seq=i + 1, announcement=a) for i, a in enumerate(self.log)][
            after : after + PAGE
        ]
        last = page[-1].seq if page else after
        head = len(self.log)
        return (
            ChangePage(changes=tuple(page), last_seq=last, head=head, more=len(page) == PAGE)
            .model_dump_json(by_alias=True)
            .encode()
        )


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[NodeService]:
    svc = NodeService(
        NodeSettings(data_dir=tmp_path),
        identity=identity.Identity.generate(),
        clock=FakeClock(),
        metrics=NodeMetrics(CollectorRegistry()),
    )
    await svc.store.open()
    yield svc
    await svc.store.close()


def announcements(n: int, prefix: str = "pkg") -> list[Announcement]:
    return [package_announcement(package(f"{prefix}{i}")) for i in range(n)]


async def test_pull_pages_through_and_resumes_from_its_cursor(service: NodeService) -> None:
    peer = FakePeerLog(announcements(5))
    service._client = peer  # type: ignore[assignment]
    assert await sync.pull(service, "peer", "http://peer:1") == 5
    assert peer.asked == [0, 2, 4]
    assert len(service.catalogue) == 5

    peer.log += announcements(1, prefix="later")
    peer.asked.clear()
    assert await sync.pull(service, "peer", "http://peer:1") == 1
    assert peer.asked == [5]


async def test_a_peer_that_lost_its_log_is_read_again_from_the_start(service: NodeService) -> None:
    await service.store.set_kv("cursor:peer", "40")
    peer = FakePeerLog(announcements(3))
    service._client = peer  # type: ignore[assignment]
    assert await sync.pull(service, "peer", "http://peer:1") == 3
    assert peer.asked[:2] == [40, 0]


async def test_a_forged_change_is_skipped_and_counted_against_the_peer(
    service: NodeService,
) -> None:
    good = announcements(2)
    assert good[0].package is not None
    forged = good[0].model_copy(
        update={"package": good[0].package.model_copy(update={"description": "evil"})}
    )
    peer = FakePeerLog([forged, good[1]])
    service._client = peer  # type: ignore[assignment]
    assert await sync.pull(service, "peer", "http://peer:1") == 1
    assert [
        meta.name for meta in (service.catalogue.get(i) for i in service.catalogue.ids()) if meta
    ] == ["pkg1"]
    assert (
        service.metrics.registry.get_sample_value(
            "marketplace_node_announcements_total", {"outcome": "invalid"}
        )
        == 1.0
    )


async def test_serving_a_compacted_log_pages_through_its_gaps_and_ends(
    service: NodeService,
) -> None:
    other = identity.Identity.generate()
    meta = package("gappy")
    await service.accept(package_announcement(meta), sender=None, forward=False)
    for created in (300, 100, 200):  # the late, older copies are compacted away at once
        await service.accept(
            provider_announcement(meta.id, other, created=created), sender=None, forward=False
        )
    seen, after = [], 0
    for _ in range(10):
        page = await sync.serve(service, after, 1)
        seen += [c.seq for c in page.changes]
        after = page.last_seq
        if not page.more:
            break
    assert len(seen) == 2  # the package and the newest provider state
    assert not page.more


def test_pull_pacing_is_jittered_around_the_interval_and_aims_at_a_known_peer() -> None:
    rng = random.Random(3)
    delays = [sync.next_pull_delay(10.0, rng) for _ in range(2_000)]
    assert all(5.0 <= d < 15.0 for d in delays)
    assert min(delays) < 5.5  # spread over the whole range
    assert max(delays) > 14.5
    assert sync.pull_peer([], rng) is None
    peers = [Peer(f"p{i}", f"http://p{i}", 0.0) for i in range(3)]
    assert {sync.pull_peer(peers, rng).peer_id for _ in range(100)} == {"p0", "p1", "p2"}  # type: ignore[union-attr]


async def test_a_pull_that_raises_does_not_end_anti_entropy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    peer = types.SimpleNamespace(peer_id="mppeer", address="http://127.0.0.1:1")
    service = types.SimpleNamespace(
        settings=types.SimpleNamespace(sync_interval_seconds=0.001),
        rng=random.Random(1),
        peers=types.SimpleNamespace(all=lambda: [peer]),
    )
    calls: list[str] = []

    async def pull(_: object, peer_id: str, address: str) -> int:
        calls.append(peer_id)
        if len(calls) == 1:
            raise RuntimeError("an announcement no handler expected")
        if len(calls) == 3:
            raise asyncio.CancelledError
        return 0

    monkeypatch.setattr(sync, "pull", pull)
    with pytest.raises(asyncio.CancelledError):
        await sync.run(service)  # type: ignore[arg-type]
    assert calls == ["mppeer"] * 3  # it went on pulling after the first one raised


def test_a_page_is_accepted_in_runs_in_which_no_name_comes_twice() -> None:
    one, other = package("one", content=b"1"), package("other", content=b"2")
    newer = package("one", "2.0", content=b"3")
    anns = [
        package_announcement(one),
        provider_announcement(one.id, identity.Identity.generate()),
        package_announcement(other),
        package_announcement(newer),  # the same name as the first: a new run
        *(provider_announcement(newer.id, identity.Identity.generate()) for _ in range(3)),
    ]
    runs = sync.independent_runs(anns, 5)
    assert [len(run) for run in runs] == [3, 4]
    assert [a for run in runs for a in run] == anns  # order kept
    assert [len(run) for run in sync.independent_runs(anns[4:], 2)] == [2, 1]
