"""Pushes are bounded in parallelism, retried with jitter on transient failures, never on 4xx."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

from marketplace_operator import errors
from marketplace_operator.policy.propagate import (
    NodeTarget,
    RetryPolicy,
    collect_local_bans,
    push_all,
    push_one,
)
from marketplace_protocol.admin import (
    LocalBan,
    LocalBans,
    NodeStatus,
    PolicyApplied,
    PolicyDocument,
)

DOC = PolicyDocument(version=5, hash="sha256:x")
N1 = NodeTarget("n1", "uid1", "http://127.1.0.1:7070")
N2 = NodeTarget("n2", "uid2", "http://127.1.0.2:7070")


class FakeNodes:
    """Scripted answers per node base URL; records concurrency."""

    def __init__(self, script: dict[str, list[Exception | int]], *, delay: float = 0.0) -> None:
        self.script = script
        self.calls: list[str] = []
        self.status_version: dict[str, int | None] = {}
        self.delay = delay
        self.active = 0
        self.peak = 0

    async def put_policy(self, base: str, token: str, policy: PolicyDocument) -> PolicyApplied:
        assert token == "t0ken"
        self.calls.append(base)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
            queue = self.script.get(base)
            step = queue.pop(0) if queue else policy.version
            if isinstance(step, Exception):
                raise step
            return PolicyApplied(version=step, hash=policy.hash)
        finally:
            self.active -= 1

    async def status(self, base: str, token: str, *, peers: int) -> NodeStatus:
        if base not in self.status_version:
            raise errors.NodeUnreachable("down")
        return NodeStatus(peer_id="p", policy_version=self.status_version[base])

    async def local_bans(self, base: str, token: str) -> LocalBans:
        if base == N2.base_url:
            raise errors.NodeUnreachable("down")
        ban = LocalBan(
            peer_id="peerAAAAAAAA",
            reason="spam",
            offences=2,
            banned_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        return LocalBans(peer_id="p", bans=[ban])


async def _no_sleep(_: float) -> None:
    return None


RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.1)


async def test_success_first_time() -> None:
    fake = FakeNodes({})
    out = await push_one(fake, N1, "t0ken", DOC, retry=RETRY, rng=random.Random(1), sleep=_no_sleep)
    assert out.ok
    assert (out.applied, out.attempts, out.error) == (5, 1, None)


async def test_transient_failures_are_retried_with_bounded_jittered_sleeps() -> None:
    fake = FakeNodes(
        {
            N1.base_url: [
                errors.NodeUnreachable("refused"),
                errors.NodeRefused("boom", status=503),
                5,
            ]
        }
    )
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    out = await push_one(fake, N1, "t0ken", DOC, retry=RETRY, rng=random.Random(1), sleep=sleep)
    assert out.ok
    assert out.attempts == 3
    assert len(slept) == 2
    assert 0 <= slept[0] <= 0.01
    assert 0 <= slept[1] <= 0.02


async def test_gives_up_after_the_attempts() -> None:
    fake = FakeNodes({N1.base_url: [errors.NodeUnreachable("refused")] * 5})
    out = await push_one(fake, N1, "t0ken", DOC, retry=RETRY, rng=random.Random(1), sleep=_no_sleep)
    assert not out.ok
    assert out.attempts == 3
    assert out.error == "refused"
    assert fake.calls == [N1.base_url] * 3


async def test_client_errors_are_not_retried() -> None:
    fake = FakeNodes({N1.base_url: [errors.NodeRefused("bad", status=400, code="invalid_input")]})
    out = await push_one(fake, N1, "t0ken", DOC, retry=RETRY, rng=random.Random(1), sleep=_no_sleep)
    assert (out.ok, out.attempts) == (False, 1)


async def test_unauthorized_is_flagged_for_a_token_refresh() -> None:
    fake = FakeNodes({N1.base_url: [errors.NodeRefused("no", status=401, code="unauthenticated")]})
    out = await push_one(fake, N1, "t0ken", DOC, retry=RETRY, rng=random.Random(1), sleep=_no_sleep)
    assert out.unauthorized
    assert out.attempts == 1


async def test_stale_answer_reports_the_nodes_version() -> None:
    fake = FakeNodes({N1.base_url: [errors.NodeRefused("older", status=409, code="stale_policy")]})
    fake.status_version[N1.base_url] = 9
    out = await push_one(fake, N1, "t0ken", DOC, retry=RETRY, rng=random.Random(1), sleep=_no_sleep)
    assert not out.ok
    assert out.node_version == 9
    assert out.attempts == 1


async def test_push_all_bounds_parallelism_and_keeps_order() -> None:
    nodes = [NodeTarget(f"n{i}", f"u{i}", f"http://127.1.0.{i}:7070") for i in range(1, 21)]
    fake = FakeNodes({}, delay=0.01)
    outcomes = await push_all(fake, nodes, "t0ken", DOC, parallelism=4, retry=RETRY)
    assert [o.node for o in outcomes] == nodes
    assert all(o.ok for o in outcomes)
    assert fake.peak == 4


async def test_one_dead_node_does_not_fail_the_others() -> None:
    fake = FakeNodes({N2.base_url: [errors.NodeUnreachable("down")] * 3})
    outcomes = await push_all(fake, [N1, N2], "t0ken", DOC, retry=RETRY, sleep=_no_sleep)
    assert [o.ok for o in outcomes] == [True, False]


async def test_told_is_set_once_every_node_had_its_first_attempt_whatever_its_answer() -> None:
    """What the worker writes the fleet ConfigMap after: each node answered (or failed) once;
    only the retries are left. Every kind of first answer counts, in any order."""
    nodes = [NodeTarget(f"n{i}", f"u{i}", f"http://127.1.0.{i}:7070") for i in range(1, 7)]
    firsts: list[Exception | int] = [
        5, errors.NodeUnreachable("refused"), errors.NodeRefused("busy", status=503),
        errors.NodeRefused("bad", status=400), errors.NodeRefused("no", status=401),
        errors.NodeRefused("older", status=409),
    ]  # fmt: skip
    for order in (nodes, nodes[::-1]):
        fake = FakeNodes({n.base_url: [f] for n, f in zip(order, firsts, strict=True)})
        told = asyncio.Event()
        retried = asyncio.Event()

        async def sleep(_: float, retried: asyncio.Event = retried) -> None:
            retried.set()
            await asyncio.sleep(0.05)

        pushing = asyncio.create_task(
            push_all(fake, order, "t0ken", DOC, parallelism=6, retry=RETRY, sleep=sleep, told=told)
        )
        await told.wait()
        assert sorted(fake.calls) == sorted(n.base_url for n in nodes)  # one attempt each
        assert not pushing.done()  # the two transient failures are being retried
        outcomes = {o.node: o.ok for o in await pushing}
        assert [outcomes[n] for n in order] == [True, True, True, False, False, False]
        assert retried.is_set()


async def test_told_waits_for_the_nodes_queued_behind_the_parallelism_bound() -> None:
    nodes = [NodeTarget(f"n{i}", f"u{i}", f"http://127.1.0.{i}:7070") for i in range(1, 9)]
    fake = FakeNodes({}, delay=0.01)
    told = asyncio.Event()
    pushing = asyncio.create_task(push_all(fake, nodes, "t0ken", DOC, parallelism=2, told=told))
    await told.wait()
    assert sorted(fake.calls) == sorted(n.base_url for n in nodes)
    await pushing


async def test_told_is_set_at_once_when_there_is_nobody_to_push() -> None:
    told = asyncio.Event()
    assert await push_all(FakeNodes({}), [], "t0ken", DOC, told=told) == []
    assert told.is_set()


async def test_local_bans_skip_unreachable_nodes() -> None:
    fake = FakeNodes({})
    reports = await collect_local_bans(fake, [N1, N2], "t0ken")
    assert [r.node for r in reports] == ["n1"]
    assert reports[0].bans[0].peer_id == "peerAAAAAAAA"


def test_backoff_is_full_jitter_and_capped() -> None:
    retry = RetryPolicy(attempts=10, base_delay=0.05, max_delay=1.0)
    rng = random.Random(7)
    for attempt in range(10):
        for _ in range(50):
            assert 0 <= retry.delay(attempt, rng) <= min(1.0, 0.05 * 2**attempt)
