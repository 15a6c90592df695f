"""Drain: stop taking work, finish what is in flight, hand off to peers, all before a deadline.

`track()` wraps every unit of client or peer work: while serving it counts
the work in flight; once draining it refuses new work with the retryable
`Draining` error (503), so callers go to another node. `drain()` turns
readiness false at once and runs, in the background:

1. wait until in-flight work reaches zero, for at most the drain timeout
   minus a share reserved for step 2 (`HANDOFF_SHARE`);
2. run the registered hand-offs (provider records to peers, the leaving
   announcement) concurrently, each cancelled at the deadline;
3. cut off what is still in flight at the deadline: its task is cancelled and
   `track()` turns that into `Draining`, so the client gets a 503 answer while
   the server still writes responses (aiohttp's own shutdown, which follows,
   would stop reading the request and drop the connection).

A termination signal while still serving (`handle_signal()`: an eviction, a
`kubectl delete`, not the operator's rollout, which drains first) turns readiness
false at once but keeps taking work for `settle` seconds before the drain starts,
so that load balancers and clients following the pod's readiness stop sending
first (what a preStop sleep does for servers that stop accepting on SIGTERM):
without it a client that has not yet seen the pod leave gets a 503.

A second signal (`handle_signal()` twice) or `abort()` ends the drain at
once, cutting off in-flight work the same way (review MAJOR-2). Drain is
one-way: a drained node is stopped, never resumed, so there is no state in
which work is half-accepted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final

from marketplace_protocol import errors
from marketplace_protocol.admin import DrainState, DrainStatus
from marketplace_protocol.clock import Clock, to_datetime

HANDOFF_SHARE: Final = 0.25
"""Share of the drain timeout kept for hand-offs when in-flight work runs long."""

HandOff = Callable[[], Awaitable[int]]
"""A hand-off step; returns how many provider records it handed to peers (0 if none)."""

logger = logging.getLogger(__name__)


class DrainCoordinator:
    """Counts in-flight work and runs the drain sequence once; see the module docstring."""

    def __init__(self, clock: Clock, *, timeout: float, settle: float = 0.0) -> None:
        if timeout <= 0:
            raise ValueError("the drain timeout must be positive")
        if settle < 0:
            raise ValueError("the settle time cannot be negative")
        self._clock = clock
        self._timeout = timeout
        self._settle = settle
        self._leaving = False  # signalled: not ready, still serving until the settle ends
        self._settling: asyncio.Task[None] | None = None
        self._state = DrainState.SERVING
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._working: dict[asyncio.Task[object], int] = {}  # task -> nested track() depth
        self._cut: set[asyncio.Task[object]] = set()
        self._started_at: float | None = None
        self._handed_off = 0
        self._handoffs: list[tuple[str, HandOff]] = []
        self._task: asyncio.Task[None] | None = None
        self._signals = 0
        self._ticket = _Ticket(self)

    @property
    def state(self) -> DrainState:
        return self._state

    @property
    def ready(self) -> bool:
        """Readiness: false from the moment a drain starts, or a signal arrives."""
        return self._state is DrainState.SERVING and not self._leaving

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def track(self) -> _Ticket:
        """`with drain.track():` around one unit of work; raises `Draining` once draining."""
        return self._ticket

    def add_handoff(self, name: str, step: HandOff) -> None:
        self._handoffs.append((name, step))

    def status(self) -> DrainStatus:
        return DrainStatus(
            state=self._state,
            in_flight=self._in_flight,
            started_at=None if self._started_at is None else to_datetime(self._started_at),
            handed_off_providers=self._handed_off,
        )

    def drain(self, timeout: float | None = None) -> DrainStatus:
        """Start draining (idempotent: a second call reports progress and changes nothing)."""
        if self._state is DrainState.SERVING:
            self._state = DrainState.DRAINING
            self._started_at = self._clock.wall()
            self._task = asyncio.create_task(
                self._run(seconds=timeout or self._timeout), name="marketplace-drain"
            )
        return self.status()

    def abort(self) -> None:
        """End a drain now: cancel hand-offs and cut off in-flight work."""
        if self._settling is not None and not self._settling.done():
            self._settling.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._state = DrainState.DRAINED
        self._cut_off()

    def handle_signal(self) -> None:
        """For `loop.add_signal_handler(SIGTERM, ...)`: first drain (after the settle, if
        still serving), second abort."""
        self._signals += 1
        if self._signals == 1:
            if self._state is DrainState.SERVING and self._settle > 0:
                self._leaving = True
                self._settling = asyncio.create_task(self._settle_then_drain())
            else:
                self.drain()
        else:
            logger.warning("second termination signal: ending the drain now")
            self.abort()

    async def _settle_then_drain(self) -> None:
        await asyncio.sleep(self._settle)
        self.drain()

    async def wait(self) -> DrainStatus:
        """Until the drain has finished (or was aborted), the settle before it included."""
        if self._settling is not None:
            await asyncio.wait({self._settling})
        if self._task is not None:
            await asyncio.wait({self._task})  # never raises, even for an aborted drain
        return self.status()

    async def _run(self, *, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            wait_for = seconds * (1 - HANDOFF_SHARE) if self._handoffs else seconds
            try:
                async with asyncio.timeout(wait_for):
                    await self._idle.wait()
            except TimeoutError:
                logger.warning(
                    "drain: %d requests still in flight at the deadline", self._in_flight
                )
            remaining = max(0.0, deadline - loop.time())
            if self._handoffs:
                await self._hand_off(remaining)
        finally:
            self._state = DrainState.DRAINED
            self._cut_off()

    def _cut_off(self) -> None:
        """Cancel the tasks of work still in flight; `track()` answers them with `Draining`."""
        for task in self._working.keys() - self._cut:
            self._cut.add(task)
            task.cancel()
        if self._working:
            logger.warning("drain: cut off %d requests still in flight", len(self._working))

    async def _hand_off(self, seconds: float) -> None:
        async def one(name: str, step: HandOff) -> None:
            try:
                async with asyncio.timeout(seconds):
                    self._handed_off += await step()
            except TimeoutError:
                logger.warning("drain: hand-off %s did not finish in time", name)
            except Exception:
                logger.exception("drain: hand-off %s failed", name)

        async with asyncio.TaskGroup() as group:
            for name, step in self._handoffs:
                group.create_task(one(name, step), name=f"marketplace-handoff-{name}")

    def _enter(self) -> None:
        if self._state is not DrainState.SERVING:
            raise errors.Draining("this node is draining; retry on another node")
        self._in_flight += 1
        self._idle.clear()
        task = asyncio.current_task()
        if task is not None:
            self._working[task] = self._working.get(task, 0) + 1

    def _exit(self, cancelled: bool) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()
        task = asyncio.current_task()
        if task is None or task not in self._working:
            return
        depth = self._working.pop(task) - 1
        if depth:
            self._working[task] = depth
            return
        if task in self._cut:  # our cancellation, not the caller's: answer instead of vanishing
            self._cut.discard(task)
            if task.cancelling():
                task.uncancel()
            if cancelled:
                raise errors.Draining(
                    "the drain deadline passed before this request finished; retry on another node"
                ) from None


class _Ticket:
    """The reusable context manager behind `track()` (no allocation per request)."""

    __slots__ = ("_coordinator",)

    def __init__(self, coordinator: DrainCoordinator) -> None:
        self._coordinator = coordinator

    def __enter__(self) -> None:
        self._coordinator._enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._coordinator._exit(exc_type is asyncio.CancelledError)
