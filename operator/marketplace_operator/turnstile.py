"""The node passes' turnstile: at most N passes in flight, and a user's change first.

A pass waits for a turn before it gathers its views (`nodeloop.run`). A spec change to a
whole fleet wakes every node's loop at once, and the rollout it starts wakes the replaced
nodes' loops with each of their pods' events: in a 1,000-node fleet the passes that
would say "your change is seen" (the node's `observedGeneration`) queued behind the
rollout's, a few seconds for the last of them. A pass for a generation the node's status
has not observed yet is urgent: it takes the next free turn before any routine one.

asyncio's Semaphore has no priorities, and neither has any asyncio library we would
take on for it (aiolimiter paces rates; anyio's CapacityLimiter is FIFO): this is
asyncio's own handing-over of a turn to a waiter's future, with two queues.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Turnstile:
    """Up to `turns` holders at once; an urgent waiter is let in before any routine one,
    each kind first come, first served. A released turn goes straight to the next waiter
    (no newcomer slips in before it), or back to the free count when none waits."""

    def __init__(self, turns: int) -> None:
        self._free = turns
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._routine: deque[asyncio.Future[None]] = deque()

    def waiting(self) -> tuple[int, int]:
        """Urgent and routine waiters now (what a test sees of the queues)."""
        return len(self._urgent), len(self._routine)

    @asynccontextmanager
    async def turn(self, *, urgent: bool = False) -> AsyncIterator[None]:
        await self.acquire(urgent=urgent)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, *, urgent: bool = False) -> None:
        if self._free > 0 and not self._urgent and not self._routine:
            self._free -= 1
            return
        queue = self._urgent if urgent else self._routine
        waiter = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a turn as it was cancelled: pass it on
            elif waiter in queue:  # a release may have dropped it already
                queue.remove(waiter)
            raise

    def release(self) -> None:
        for queue in (self._urgent, self._routine):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1
