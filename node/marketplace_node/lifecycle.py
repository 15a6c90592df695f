"""The node's lifecycle as an explicit state machine: created → starting → running → draining
→ stopping → stopped.

The review (MAJOR-1, MAJOR-2) found a `running: bool` behind a lock that two
tasks could both read as "not running". Here every change goes through
`advance()`, which refuses any transition not in `TRANSITIONS`, and `start()`
and `stop()` run their hooks under one `asyncio.Lock`: concurrent or repeated
calls are idempotent and never interleave (a `stop()` during `start()` waits
for it, then stops).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from typing import Final


class State(enum.StrEnum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPING = "stopping"
    STOPPED = "stopped"


TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    State.CREATED: frozenset({State.STARTING, State.STOPPED}),
    State.STARTING: frozenset({State.RUNNING, State.STOPPING}),
    State.RUNNING: frozenset({State.DRAINING, State.STOPPING}),
    State.DRAINING: frozenset({State.STOPPING}),
    State.STOPPING: frozenset({State.STOPPED}),
    State.STOPPED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A programming error: the caller asked for a transition the machine does not have."""

    def __init__(self, current: State, target: State) -> None:
        super().__init__(f"illegal lifecycle transition {current} -> {target}")
        self.current = current
        self.target = target


def advance(current: State, target: State) -> State:
    """Pure: `target` if the machine allows `current -> target`, else `IllegalTransition`."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    return target


Hook = Callable[[], Awaitable[None]]


class Lifecycle:
    """Runs the start and stop hooks exactly once each, in order, whatever the callers do.

    `on_stop` also runs when `on_start` fails or is cancelled half-way, so it
    must cope with a partial start (close what is open, skip what is not):
    the same contract as aiohttp's cleanup contexts.
    """

    def __init__(self, *, on_start: Hook, on_stop: Hook) -> None:
        self._on_start = on_start
        self._on_stop = on_stop
        self._state = State.CREATED
        self._lock = asyncio.Lock()
        self._stopped = asyncio.Event()

    @property
    def state(self) -> State:
        return self._state

    @property
    def running(self) -> bool:
        """Serving new work: running and not draining."""
        return self._state is State.RUNNING

    def _move(self, target: State) -> None:
        self._state = advance(self._state, target)
        if target is State.STOPPED:
            self._stopped.set()

    async def start(self) -> None:
        """Start once; a no-op when running or draining; `IllegalTransition` after stop."""
        async with self._lock:
            if self._state in (State.RUNNING, State.DRAINING):
                return
            self._move(State.STARTING)
            try:
                await self._on_start()
            except BaseException:
                self._move(State.STOPPING)
                try:
                    await self._on_stop()
                finally:
                    self._move(State.STOPPED)
                raise
            self._move(State.RUNNING)

    def begin_drain(self) -> None:
        """Running → draining (idempotent); refused before start or after stop."""
        if self._state is not State.DRAINING:
            self._move(State.DRAINING)

    async def stop(self) -> None:
        """Stop once; a no-op when stopped. Waits for a `start()` in progress first."""
        async with self._lock:
            if self._state is State.STOPPED:
                return
            if self._state is State.CREATED:
                self._move(State.STOPPED)
                return
            self._move(State.STOPPING)
            try:
                await self._on_stop()
            finally:
                self._move(State.STOPPED)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
