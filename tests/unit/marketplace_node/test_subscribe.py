"""Subscriptions: a slow subscriber overflows and is told to resume."""

from __future__ import annotations

import asyncio

from marketplace_node import limits
from marketplace_node.model import Query
from marketplace_node.subscribe import SubscriptionHub

from tests.support.signed import package


async def test_slow_subscriber_overflows_and_is_told_to_resume() -> None:
    hub = SubscriptionHub()
    slow = hub.open(Query())
    picky = hub.open(Query(keywords=("nomatch",)))
    for seq in range(1, limits.SUBSCRIBER_QUEUE_MAX + 2):
        hub.publish(seq, package(f"p{seq}"))
    assert slow.overflowed
    assert not picky.overflowed
    drained = []
    while not slow.queue.empty():
        drained.append(slow.queue.get_nowait())
    assert drained[-1] is None  # the end marker: the stream closes with a resumable cursor
    assert picky.queue.empty()
    await asyncio.sleep(0)
