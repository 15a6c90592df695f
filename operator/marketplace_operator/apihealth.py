"""The operator's own view of the API server: a readiness heartbeat.

The operator calls the API server when something changes, so a short outage of the API
server or of its etcd at a quiet moment passes its calls by: in the chaos suite, etcd
killed during a policy change was away for 10 s, the API server held every watch, and the
operator's writes landed before and after; the outage showed nowhere. So every
`interval` the operator asks `GET /readyz` (the API server's own readiness, which checks
etcd): `marketplace_operator_api_ready` is what it answered (1 or 0), an answer it did not
get counts in `marketplace_operator_api_unavailable_total{verb="GET"}`, and each change
is a log line (with how long it lasted, once over). That is what the operator can truly
say: it found the API server not ready; the API server's and etcd's own monitoring say why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class ApiView:
    """What the operator last found: ready or not, since when (monotonic seconds)."""

    ready: bool = True
    since: float = 0.0


def observe(view: ApiView, ready: bool, now: float) -> tuple[ApiView, str | None]:
    """The view after one answer, and the log line a change deserves (pure)."""
    if ready == view.ready:
        return view, None
    if not ready:
        return ApiView(False, now), "the API server is not ready (GET /readyz failed)"
    return ApiView(True, now), f"the API server is ready again, after {now - view.since:.0f} s"


async def watch(
    ready: Callable[[], Awaitable[bool]],
    report: Callable[[bool], None],
    *,
    interval: float = DEFAULT_INTERVAL_SECONDS,
    clock: Callable[[], float] | None = None,
) -> None:
    """Ask `ready` every `interval` seconds, forever; `report` each answer (the gauge)."""
    now = clock or asyncio.get_running_loop().time
    view = ApiView(since=now())
    while True:
        answer = await ready()
        report(answer)
        view, change = observe(view, answer, now())
        if change is not None:
            (log.info if answer else log.warning)(change)
        await asyncio.sleep(interval)
