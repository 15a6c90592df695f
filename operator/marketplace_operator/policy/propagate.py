"""Pushing a policy to a fleet's nodes, and collecting their local bans: bounded, retried.

The node client is a parameter (`PolicyClient`, satisfied by `nodeclient.NodeClient`),
so this module does no I/O of its own and tests drive it with fakes. Each node
gets its own attempts with full-jitter exponential backoff; a fleet push runs
at most `parallelism` nodes at once; one slow or dead node never delays the
others' acknowledgement.

A node answering 409 (`stale_policy`: it already has a newer version, or
`conflict`: same version with other content) is not retried: its applied
version is read back (`GET /admin/v1/status`) and reported as `node_version`,
so the next round issues a version above it (versioning's `floor`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from marketplace_protocol.admin import LocalBans, NodeStatus, PolicyApplied, PolicyDocument

from marketplace_operator import errors
from marketplace_operator.policy.autoban import NodeReport

Sleep = Callable[[float], Awaitable[None]]


class PolicyClient(Protocol):
    """The admin-API calls propagation needs (nodeclient.NodeClient has them)."""

    async def put_policy(self, base: str, token: str, policy: PolicyDocument) -> PolicyApplied: ...

    async def status(self, base: str, token: str, *, peers: int) -> NodeStatus: ...

    async def local_bans(self, base: str, token: str) -> LocalBans: ...


@dataclass(frozen=True)
class NodeTarget:
    """One node of a fleet as propagation sees it: its name, pod and admin base URL."""

    name: str
    pod_uid: str
    base_url: str


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per node and full-jitter exponential backoff between them."""

    attempts: int = 4
    base_delay: float = 0.05
    max_delay: float = 1.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Sleep before attempt `attempt + 1` (0-based): uniform in [0, min(max, base·2^n)]."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * (2**attempt)))


@dataclass(frozen=True)
class PushOutcome:
    """What one node said to one push."""

    node: NodeTarget
    applied: int | None  # version the node confirmed, None on failure
    error: str | None = None
    node_version: int | None = None  # on 409: the version the node has
    attempts: int = 1
    unauthorized: bool = False

    @property
    def ok(self) -> bool:
        return self.applied is not None


def _retriable(exc: errors.OperatorError) -> bool:
    if isinstance(exc, errors.NodeRefused):
        return exc.status is None or exc.status >= 500 or exc.status == 429
    return exc.retriable


async def _read_version(client: PolicyClient, node: NodeTarget, token: str) -> int | None:
    try:
        return (await client.status(node.base_url, token, peers=0)).policy_version
    except errors.OperatorError:
        return None


async def push_one(
    client: PolicyClient,
    node: NodeTarget,
    token: str,
    doc: PolicyDocument,
    *,
    retry: RetryPolicy,
    rng: random.Random,
    sleep: Sleep = asyncio.sleep,
    attempted: Callable[[], None] | None = None,
) -> PushOutcome:
    """PUT the document to one node, retrying transient failures; never raises.
    `attempted` is called once, when the first attempt has an answer (or failed)."""
    last = ""
    for attempt in range(retry.attempts):
        if attempt:
            await sleep(retry.delay(attempt - 1, rng))
        try:
            applied = await client.put_policy(node.base_url, token, doc)
        except errors.NodeRefused as exc:
            last = exc.message
            if exc.status == 409:
                version = await _read_version(client, node, token)
                return PushOutcome(node, None, last, node_version=version, attempts=attempt + 1)
            if exc.status == 401:
                return PushOutcome(node, None, last, attempts=attempt + 1, unauthorized=True)
            if not _retriable(exc):
                return PushOutcome(node, None, last, attempts=attempt + 1)
        except errors.OperatorError as exc:
            last = exc.message
            if not _retriable(exc):
                return PushOutcome(node, None, last, attempts=attempt + 1)
        else:
            return PushOutcome(node, applied.version, attempts=attempt + 1)
        finally:
            if attempt == 0 and attempted is not None:
                attempted()
    return PushOutcome(node, None, last or "no attempt made", attempts=retry.attempts)


async def push_all(
    client: PolicyClient,
    nodes: Sequence[NodeTarget],
    token: str,
    doc: PolicyDocument,
    *,
    parallelism: int = 32,
    retry: RetryPolicy | None = None,
    rng: random.Random | None = None,
    sleep: Sleep = asyncio.sleep,
    told: asyncio.Event | None = None,
) -> list[PushOutcome]:
    """Push to every node, at most `parallelism` at once; outcomes in `nodes` order.
    `told` is set once every node's first attempt has an answer (or failed): the nodes
    that take the document have it then, only retries are left."""
    slots = asyncio.Semaphore(max(1, parallelism))
    retry = retry or RetryPolicy()
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    untold = len(nodes)

    def attempted() -> None:
        nonlocal untold
        untold -= 1
        if untold == 0 and told is not None:
            told.set()

    async def one(node: NodeTarget) -> PushOutcome:
        async with slots:
            return await push_one(
                client, node, token, doc, retry=retry, rng=rng, sleep=sleep, attempted=attempted
            )

    if not nodes and told is not None:
        told.set()
    return list(await asyncio.gather(*(one(n) for n in nodes)))


async def collect_local_bans(
    client: PolicyClient, nodes: Sequence[NodeTarget], token: str, *, parallelism: int = 32
) -> list[NodeReport]:
    """Every reachable node's local bans; a node that does not answer is skipped this round."""
    slots = asyncio.Semaphore(max(1, parallelism))

    async def one(node: NodeTarget) -> NodeReport | None:
        async with slots:
            try:
                answer = await client.local_bans(node.base_url, token)
            except errors.OperatorError:
                return None
            return NodeReport(node.name, answer.bans)

    found = await asyncio.gather(*(one(n) for n in nodes))
    return [r for r in found if r is not None]
