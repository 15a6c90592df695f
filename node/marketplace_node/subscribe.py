"""Live catalogue subscriptions: a bounded queue per subscriber, fed by accepted packages.

Slow-subscriber policy: a subscriber's queue holds `SUBSCRIBER_QUEUE_MAX`
events; when a new event finds it full, the subscriber is marked overflowed
and its queue dropped, and the stream ends with an `overflow` event carrying
the last delivered cursor. The client reconnects with that cursor
(`Last-Event-ID`) and the node replays the missed changes from its durable
change log, so a slow subscriber loses nothing but never holds memory
hostage.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from marketplace_protocol.errors import RateLimited

from marketplace_node import limits
from marketplace_node.model import PackageMeta, Query
from marketplace_node.search import matches

Event = tuple[int, PackageMeta]


@dataclass(eq=False)
class Subscriber:
    query: Query
    queue: asyncio.Queue[Event | None] = field(
        default_factory=lambda: asyncio.Queue(limits.SUBSCRIBER_QUEUE_MAX)
    )
    overflowed: bool = False


class SubscriptionHub:
    def __init__(self, *, max_subscribers: int = limits.SUBSCRIBERS_MAX) -> None:
        self._subscribers: set[Subscriber] = set()
        self._max = max_subscribers

    def __len__(self) -> int:
        return len(self._subscribers)

    def open(self, query: Query) -> Subscriber:
        if len(self._subscribers) >= self._max:
            raise RateLimited("too many subscribers", retry_after=5.0)
        sub = Subscriber(query)
        self._subscribers.add(sub)
        return sub

    def close(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def close_all(self) -> None:
        """Wake every stream with an end marker (drain, shutdown); each ends with its cursor."""
        for sub in self._subscribers:
            _wake(sub)

    def publish(self, seq: int, meta: PackageMeta, downloads: int = 0) -> None:
        for sub in self._subscribers:
            if sub.overflowed or not matches(sub.query, meta, downloads):
                continue
            try:
                sub.queue.put_nowait((seq, meta))
            except asyncio.QueueFull:
                sub.overflowed = True
                _wake(sub)


def _wake(sub: Subscriber) -> None:
    while True:
        try:
            sub.queue.put_nowait(None)
            return
        except asyncio.QueueFull:
            sub.queue.get_nowait()  # drop the oldest: the stream replays from the log anyway
