"""Status of BanLists and RateLimitPolicies, and Events about input that cannot apply.

One writer for those statuses: the worker calls `write_statuses(namespace)` after
each round; concurrent calls coalesce into one more pass. A status is patched only
when it differs from what was written last (or, after a restart, from the live
object), and a problem is announced by one Warning Event per distinct message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marketplace_protocol.clock import Clock, to_datetime
from pydantic import ValidationError

from marketplace_operator.model.common import Condition
from marketplace_operator.policy.ports import (
    UNREAD,
    Cluster,
    FleetKey,
    FleetState,
    Inputs,
    ObjectRef,
)
from marketplace_operator.policy.status import FleetView, object_status


def _conditions(status: dict[str, Any]) -> list[Condition]:
    found = []
    for raw in status.get("conditions") or []:
        try:
            found.append(Condition.model_validate(raw))
        except ValidationError:
            continue
    return found


def _key(ref: ObjectRef) -> tuple[str, str, str, str]:
    return (ref.plural, ref.namespace, ref.name, ref.uid)


def _without_nulls(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if v is not None}


class StatusReporter:
    def __init__(
        self,
        *,
        inputs: Inputs,
        cluster: Cluster,
        clock: Clock,
        state: Callable[[FleetKey], FleetState],
    ) -> None:
        self._inputs = inputs
        self._cluster = cluster
        self._clock = clock
        self.state = state
        # By uid: an object deleted and recreated under its name is a new object (its
        # status is written and its problem announced again).
        self._written: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self._reported: dict[tuple[str, str, str, str], str] = {}
        self._running: set[str] = set()
        self._dirty: set[str] = set()

    def _views(self, ref: ObjectRef, selects: Any) -> tuple[list[FleetView], str | None]:
        namespace = ref.namespace
        views, problems = [], []
        for key in sorted(self._inputs.fleets()):
            if key.namespace != namespace or not selects(key.fleet):
                continue
            fleet = self.state(key)
            stored = None if fleet.stored in (None, UNREAD) else fleet.stored
            version = None if stored is None else stored.version
            nodes = self._inputs.nodes(key)
            views.append(
                FleetView(
                    fleet=key.fleet,
                    version=version,
                    nodes=tuple(n.name for n in nodes),
                    converged=tuple(
                        n.name
                        for n in nodes
                        if version is not None and fleet.applied.get(n, -1) >= version
                    ),
                    includes=(ref.uid, ref.generation) in fleet.included,
                    frozen=None if fleet.problem is None else f"fleet {key.fleet}: {fleet.problem}",
                )
            )
            if fleet.problem is not None:
                problems.append((key.fleet, fleet))
        return views, None if not problems else "; ".join(
            f"fleet {name}: {f.problem}" for name, f in problems
        )

    async def write_statuses(self, namespace: str) -> None:
        """Write every changed status of the namespace; concurrent calls coalesce into one pass
        that starts after the running one, so the last pass always sees the latest state."""
        if namespace in self._running:
            self._dirty.add(namespace)
            return
        self._running.add(namespace)
        try:
            self._dirty.add(namespace)
            while namespace in self._dirty:
                self._dirty.discard(namespace)
                await self._write_statuses(namespace)
        finally:
            self._running.discard(namespace)

    async def _write_statuses(self, namespace: str) -> None:
        now = to_datetime(self._clock.wall())
        jobs: list[tuple[ObjectRef, dict[str, Any], str | None]] = []
        for bl in self._inputs.banlists(namespace):
            ref = ObjectRef("banlists", namespace, bl.name, bl.uid, bl.generation)
            expired = sum(
                1 for e in bl.spec.entries if (x := e.expiry(bl.created)) is not None and x <= now
            )
            extra: dict[str, Any] = {"entries": len(bl.spec.entries), "expiredEntries": expired}
            jobs.append((ref, *self._status_for(ref, bl.spec.selects, bl.status, extra, now)))
        for rlp in self._inputs.policies(namespace):
            ref = ObjectRef("ratelimitpolicies", namespace, rlp.name, rlp.uid, rlp.generation)
            extra = {"limits": ",".join(rlp.spec.fields_set()) or "none"}
            jobs.append((ref, *self._status_for(ref, rlp.spec.selects, rlp.status, extra, now)))
        for bad in self._inputs.invalid(namespace):
            status = object_status(
                generation=bad.ref.generation,
                fleets=[],
                problem=bad.message,
                previous_conditions=[],
                now=now,
            )
            jobs.append((bad.ref, status, bad.message))
        for ref, status, problem in jobs:
            await self._write_status(ref, status, problem)

    def _status_for(
        self,
        ref: ObjectRef,
        selects: Any,
        live: dict[str, Any],
        extra: dict[str, Any],
        now: Any,
    ) -> tuple[dict[str, Any], str | None]:
        views, fleet_problem = self._views(ref, selects)
        blamed = any(ref.name in self.state(FleetKey(ref.namespace, v.fleet)).blamed for v in views)
        problem = fleet_problem if blamed else None
        previous = self._written.get(_key(ref), live)
        status = object_status(
            generation=ref.generation,
            fleets=views,
            problem=problem,
            previous_conditions=_conditions(previous),
            now=now,
            extra=extra,
        )
        return status, problem

    async def _write_status(
        self, ref: ObjectRef, status: dict[str, Any], problem: str | None
    ) -> None:
        key = _key(ref)
        if self._written.get(key) == _without_nulls(status):
            return
        await self._cluster.write_status(ref, status)
        self._written[key] = _without_nulls(status)
        if problem is not None and self._reported.get(key) != problem:
            self._reported[key] = problem
            await self._cluster.event(ref, reason="CannotApply", message=problem, warning=True)
        elif problem is None:
            self._reported.pop(key, None)
