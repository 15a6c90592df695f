"""The rolling-restart planner: one observed fleet and `now` in, the next decision out.

Pure: no I/O, no clock, no memory between calls. The decision carries the
record to write to the fleet's status *before* its actions are carried out,
so an operator killed at any point re-reads the record and resumes; a
decision is a fixed point (planning again with its own record and the same
observation gives the same record and actions), so resuming never starts a
second step.

Rules (docs/rollout.md):

- A node needs a new pod when its pod's template hash (which covers the restart
  token) differs from the desired one. Nodes without a pod, or whose pod is already being
  deleted, are the node reconcile's business (it creates pods), not a step.
- Unavailable = no pod, pod deleting, failed, not Ready, not joined, draining,
  or being replaced. A step on an available node starts only if the fleet
  stays within `maxUnavailable`; a step on an already-unavailable node costs
  nothing and may always start. At most `maxUnavailable` (resolved against the
  fleet's members) steps run at once, and never more than `MAX_STEPS`.
- Membership: a step on an available node waits while some other node in service
  is connected (by peer id) only to fleet members that would then be out — taking
  its last peer would un-join it. "Ready" is not taken for "re-joined".
- Order: unavailable nodes first, then by name.
- A step first takes the pod out of load balancers: it is marked leaving and its
  `joined` readiness gate turned off, so the pod turns unready while the node
  still serves; once no EndpointSlice lists it as ready any more (or at the latest
  `settle` after the step started when the slices cannot be read, `ROUTED_WAIT`
  when they still list it), the
  node is drained through its admin API (it refuses new work from then on), and
  once drained the pod is deleted; the step then waits for the replacement to be
  Ready and joined. A pod once marked leaving is always replaced. If that takes longer than
  the grace period plus `stepTimeout`, the step fails: the rollout records a
  failure and starts nothing more until the failed node's spec changes or the
  node recovers on its own.
- Paused: running steps finish, nothing new starts; the order is recomputed
  from the observation, so nothing is lost.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from marketplace_operator.model.fleet import (
    MAX_FAILURES,
    MAX_PLAN_ENTRIES,
    MAX_STEPS,
    PlanEntry,
    RolloutFailure,
    RolloutPhase,
    RolloutStep,
    StepPhase,
)
from marketplace_operator.rollout.observation import (
    Drain,
    FleetSettings,
    FleetView,
    NodeView,
    Record,
    Revision,
)


class Reason(enum.StrEnum):
    """Why a node needs a new pod."""

    TEMPLATE_CHANGED = "TemplateChanged"
    RESTART_REQUESTED = "RestartRequested"


@dataclass(frozen=True, slots=True)
class MarkLeaving:
    """Mark pod `pod_uid` of `node` leaving and turn off its `joined` gate, so it turns
    unready and load balancers stop sending to it before it refuses new work."""

    node: str
    pod_uid: str


@dataclass(frozen=True, slots=True)
class DrainNode:
    """Ask the pod `pod_uid` of `node` to drain (idempotent): it stops taking work and hands
    off its records. The uid keeps a stale decision from draining a newer pod."""

    node: str
    pod_uid: str
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class DeletePod:
    """Delete pod `pod_uid` of `node` (uid precondition) with its grace period; the node
    reconcile creates the new one. The uid keeps a stale decision from deleting a newer pod."""

    node: str
    pod_uid: str
    grace_seconds: float


Action = MarkLeaving | DrainNode | DeletePod


@dataclass(frozen=True, slots=True)
class Note:
    """A transition worth a Kubernetes Event, emitted once (only when the record changes)."""

    reason: str
    message: str
    node: str | None = None
    warning: bool = False
    # A step's own progress (drained, replaced): an Event on its MarketplaceNode only. The
    # fleet's Events say when steps start and fail and when the rollout ends; with both,
    # a 1,000-node rollout posted 6,000 rollout Events, half of the operator's (issue 15).
    node_only: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """Write `record` first, then carry out `actions`, then emit `notes`."""

    record: Record
    actions: tuple[Action, ...]
    notes: tuple[Note, ...]
    plan: tuple[PlanEntry, ...]
    pending: int
    phase: RolloutPhase
    blocked_by: str | None
    nodes: int
    updated: int
    unavailable: int
    rejoining: str | None = None
    """A node whose new connections the next step waits to see: only its own status
    reports them, so the caller refreshes that node's status now rather than at its
    periodic poll."""


def reasons(node: NodeView) -> tuple[Reason, ...]:
    """Why `node`'s pod must be replaced; empty when it needs no new pod from the rollout."""
    pod = node.pod
    if pod is None or pod.deleting:
        return ()
    if pod.revision.satisfies(node.desired):
        return ()
    if node.desired.restart is not None and pod.revision.restart != node.desired.restart:
        return (Reason.RESTART_REQUESTED,)  # the template may have changed as well
    return (Reason.TEMPLATE_CHANGED,)


def order(nodes: tuple[NodeView, ...]) -> list[NodeView]:
    """Nodes needing a new pod, unavailable ones first, then by name (stable, documented)."""
    return sorted((n for n in nodes if reasons(n)), key=lambda n: (n.available, n.name))


@dataclass(frozen=True, slots=True)
class _Outcome:
    step: RolloutStep | None  # None: the step is over (completed, failed or moot)
    action: Action | None = None
    failure: RolloutFailure | None = None
    waiting: str | None = None
    notes: tuple[Note, ...] = ()
    # A step dropped before its node was replaced: a mark or drain it was sent may still be
    # landing, so the node counts as out until the next pass sees it (`plan`).
    dropped: str | None = None


def _retarget(step: RolloutStep, desired: Revision) -> RolloutStep:
    if step.target_hash == desired.template_hash and step.target_restart == desired.restart:
        return step
    return step.model_copy(
        update={"target_hash": desired.template_hash, "target_restart": desired.restart}
    )


def _failure(step: RolloutStep, reason: str, message: str, now: datetime) -> _Outcome:
    failure = RolloutFailure(
        node=step.node,
        target_hash=step.target_hash,
        target_restart=step.target_restart,
        reason=reason,
        message=message,
        since=now,
    )
    note = Note("RolloutStepFailed", f"{step.node}: {message}", step.node, warning=True)
    return _Outcome(step=None, failure=failure, notes=(note,))


def _replace_failure(node: NodeView) -> tuple[str, str]:
    pod = node.pod
    if pod is None:
        return "PodNotCreated", "the replacement pod was not created"
    if pod.failed:
        return "PodFailed", "the replacement pod failed"
    if not pod.joined and pod.ready:
        return "NotJoined", "the replacement pod did not re-join its fleet"
    if not pod.ready:
        return "PodNotReady", "the replacement pod did not become Ready and joined"
    return "PodNotAvailable", "the replacement pod is draining"


def _skipped(node: NodeView) -> _Outcome:
    """The step ends unfinished: its node is on target and serving (`_Outcome.dropped`)."""
    note = Note("RolloutStepSkipped", "already on target", node.name)
    return _Outcome(step=None, notes=(note,), dropped=node.name)


# How long after its step began a leaving pod that an EndpointSlice still lists as ready is
# kept from its drain (a drained node refuses new work: "503 draining"). The slice follows
# the pod's Ready within moments, but that Ready can itself come more than `settle` after
# the step began (a real kubelet's status sync, a loaded machine): drained at `settle`,
# such a pod still took requests (the real-Node upgrade test, session 19).
ROUTED_WAIT = timedelta(seconds=10)


def _leaving(step: RolloutStep, node: NodeView, settings: FleetSettings, now: datetime) -> _Outcome:
    pod = node.pod
    if node.on_target and node.available:
        # Replaced by someone else (or the spec moved back) before it left: nothing to do,
        # and reporting LeaveRefused would only be dropped as resolved on the next pass.
        return _skipped(node)
    if pod is None or pod.deleting or pod.failed:
        moved = step.model_copy(update={"phase": StepPhase.REPLACING, "phase_since": now})
        return _Outcome(step=moved)
    if pod.leaving and not pod.ready:
        # Still listed: up to ROUTED_WAIT; unknown (slices unreadable): up to settle.
        wait = max(ROUTED_WAIT, settings.settle) if pod.routed else settings.settle
        if pod.routed is not False and now < step.phase_since + wait:
            return _Outcome(step=step, waiting=f"{node.name}: letting load balancers drop it")
        moved = step.model_copy(update={"phase": StepPhase.DRAINING, "phase_since": now})
        return _Outcome(step=moved)
    if now >= step.phase_since + node.grace + settings.step_timeout:
        return _failure(step, "LeaveRefused", "the pod stayed Ready with its gate off", now)
    action = MarkLeaving(node.name, pod.uid)
    return _Outcome(step=step, action=action, waiting=f"{node.name}: taking it out of service")


def _draining(
    step: RolloutStep, node: NodeView, settings: FleetSettings, now: datetime
) -> _Outcome:
    pod = node.pod
    if node.on_target and node.available:
        return _skipped(node)
    drained = pod is not None and pod.drain == Drain.DRAINED and not pod.ready
    gone = pod is None or pod.deleting or pod.failed
    # Past the drain timeout the pod goes anyway, unless it answers that it is still serving
    # and Ready: deleting it would fail its clients' requests, so that stops the rollout.
    refused = pod is not None and pod.ready and pod.drain == Drain.SERVING
    overdue = now >= step.phase_since + node.grace
    if refused and now >= step.phase_since + node.grace + settings.step_timeout:
        return _failure(step, "DrainRefused", "the node kept serving and did not drain", now)
    if drained or gone or (overdue and not refused):
        why = "drained" if drained else "drain deadline passed" if overdue else "pod not serving"
        moved = step.model_copy(update={"phase": StepPhase.REPLACING, "phase_since": now})
        note = Note("NodeDrained", f"{node.name}: {why}", node.name, node_only=True)
        return _Outcome(step=moved, notes=(note,))
    assert pod is not None
    if pod.drain in (Drain.SERVING, Drain.UNKNOWN):
        action = DrainNode(node.name, pod.uid, node.grace.total_seconds())
        return _Outcome(step=step, action=action, waiting=f"{node.name}: draining")
    return _Outcome(step=step, waiting=f"{node.name}: draining, waiting for in-flight work")


def _replacing(
    step: RolloutStep, node: NodeView, settings: FleetSettings, now: datetime
) -> _Outcome:
    pod = node.pod
    fresh = (
        node.on_target
        and pod is not None
        and not pod.leaving
        and pod.drain in (Drain.SERVING, Drain.UNKNOWN)
    )
    if fresh and node.available:
        note = Note("NodeReplaced", "Ready and joined", node.name, node_only=True)
        return _Outcome(step=None, notes=(note,))
    if now >= step.phase_since + node.grace + settings.step_timeout:
        if pod is not None and not fresh:
            what = "was not deleted" if not pod.deleting else "did not terminate"
            return _failure(step, "PodNotTerminated", f"the old pod {what}", now)
        return _failure(step, *_replace_failure(node), now)
    if pod is None:
        return _Outcome(step=step, waiting=f"{node.name}: waiting for the new pod")
    if pod.deleting:
        return _Outcome(step=step, waiting=f"{node.name}: old pod terminating")
    if fresh:
        return _Outcome(step=step, waiting=f"{node.name}: waiting for Ready and joined")
    action = DeletePod(node.name, pod.uid, node.grace.total_seconds())
    return _Outcome(step=step, action=action, waiting=f"{node.name}: deleting the old pod")


def _advance(
    step: RolloutStep, node: NodeView | None, settings: FleetSettings, now: datetime
) -> _Outcome:
    """Move one step as far as the observation allows (to a fixed point)."""
    if node is None:
        return _Outcome(step=None, notes=(Note("RolloutStepDropped", f"{step.node} is gone"),))
    notes: tuple[Note, ...] = ()
    step = _retarget(step, node.desired)
    for _ in range(4):  # Leaving → Draining → Replacing → done is the longest chain
        stage = {
            StepPhase.LEAVING: _leaving,
            StepPhase.DRAINING: _draining,
            StepPhase.REPLACING: _replacing,
        }[step.phase]
        out = stage(step, node, settings, now)
        notes += out.notes
        if out.step is None or out.step == step:
            return replace(out, notes=notes)
        step = out.step
    return _Outcome(step=step, notes=notes)  # pragma: no cover - the chain is at most three moves


def _resolved(failure: RolloutFailure, node: NodeView | None) -> bool:
    """A failure stops blocking once its node is gone, its spec changed, or it recovered."""
    if node is None:
        return True
    target = Revision(failure.target_hash, failure.target_restart)
    return node.desired != target or (node.on_target and node.available)


def _start(node: NodeView, now: datetime) -> tuple[RolloutStep, Note]:
    why = [str(r) for r in reasons(node)]
    phase = StepPhase.LEAVING if node.available else StepPhase.REPLACING
    step = RolloutStep(
        node=node.name,
        phase=phase,
        target_hash=node.desired.template_hash,
        target_restart=node.desired.restart,
        reasons=why,
        started_at=now,
        phase_since=now,
    )
    note = Note("RolloutStepStarted", f"replacing {node.name}: {', '.join(why)}", node.name)
    return step, note


@dataclass(slots=True)
class _Draft:
    """The decision being assembled by `plan`'s stages."""

    failures: list[RolloutFailure] = field(default_factory=list)
    steps: list[RolloutStep] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    rejoining: str | None = None
    dropped: set[str] = field(default_factory=set)  # steps dropped unfinished (`_Outcome`)

    def take(self, out: _Outcome) -> None:
        self.notes.extend(out.notes)
        if out.dropped is not None:
            self.dropped.add(out.dropped)
        if out.step is not None:
            self.steps.append(out.step)
        if out.action is not None:
            self.actions.append(out.action)
        if out.failure is not None and len(self.failures) < MAX_FAILURES:
            self.failures.append(out.failure)
        if out.waiting is not None:
            self.waiting.append(out.waiting)


def _carry_over(fleet: FleetView, draft: _Draft, now: datetime) -> None:
    """Drop resolved failures; advance every recorded step."""
    by_name = {n.name: n for n in fleet.nodes}
    for failure in fleet.record.failures:
        if _resolved(failure, by_name.get(failure.node)):
            note = Note("RolloutResumed", f"{failure.node} no longer blocks", failure.node)
            draft.notes.append(note)
        else:
            draft.failures.append(failure)
    for step in fleet.record.steps:
        if step.node not in {s.node for s in draft.steps}:  # duplicates: keep the first
            draft.take(_advance(step, by_name.get(step.node), fleet.settings, now))


@dataclass(frozen=True, slots=True)
class _Links:
    """Who in the fleet is connected to whom, built once per decision: asking it for each
    candidate of a step was O(N) sets each (half a second for 64 candidates at 1,000)."""

    peer_ids: dict[str, str]  # node name -> its peer id (when known)
    available: frozenset[str]
    watched: tuple[tuple[str, frozenset[str]], ...]
    """Nodes whose every peer is listed and some of them members: (name, member peer ids).
    The others cannot be found isolated (unknown, or more peers than listed)."""

    @classmethod
    def of(cls, nodes: tuple[NodeView, ...]) -> _Links:
        peer_ids = {n.name: n.peer_id for n in nodes if n.peer_id is not None}
        fleet_ids = frozenset(peer_ids.values())
        watched = []
        for node in nodes:
            if node.peers is None or node.peer_count > len(node.peers):
                continue
            linked = node.peers & fleet_ids
            if linked:
                watched.append((node.name, linked))
        available = frozenset(n.name for n in nodes if n.available)
        return cls(peer_ids, available, tuple(watched))

    def isolates(self, candidate: str, out: set[str]) -> str | None:
        """A node in service whose every known fleet peer would be out with `candidate` gone.

        Only while another member stays in service that it could re-join: in a fleet of
        two, or when maxUnavailable takes out all the others, waiting cannot help and would
        block forever."""
        if not self.watched:
            return None
        leaving = out | {candidate}
        gone = {self.peer_ids[n] for n in leaving if n in self.peer_ids}
        staying = self.available - leaving
        if len(staying) < 2:  # no other member in service to re-join
            return None
        for name, linked in self.watched:
            if name in staying and linked <= gone:
                return name
        return None


def _start_steps(
    fleet: FleetView, draft: _Draft, queue: list[NodeView], unavailable: set[str], now: datetime
) -> str | None:
    """Start steps from the head of `queue` while the budget allows; say what blocks the next."""
    settings = fleet.settings
    if draft.failures:
        first = draft.failures[0]
        return f"{first.node} failed ({first.reason}): fix its spec or the node to resume"
    if settings.paused:
        return "paused"
    links = _Links.of(fleet.nodes)
    while queue:
        node = queue[0]
        costs = node.name not in unavailable
        if len(draft.steps) >= min(settings.max_unavailable, MAX_STEPS) or (
            costs and len(unavailable) + 1 > settings.max_unavailable
        ):
            out_now = ", ".join(sorted(unavailable)) or "none"
            return (
                f"{len(unavailable)} of maxUnavailable {settings.max_unavailable} "
                f"nodes unavailable ({out_now})"
            )
        lonely = links.isolates(node.name, unavailable) if costs else None
        if lonely is not None:
            draft.rejoining = lonely
            return (
                f"{lonely} is connected only to nodes that would be out; waiting for it to re-join"
            )
        step, note = _start(node, now)
        draft.notes.append(note)
        out = _advance(step, node, settings, now)
        assert out.step is not None, "a fresh step cannot be over: the node needs a new pod"
        draft.take(out)
        queue.pop(0)
        unavailable.add(node.name)
    return None


def _phase(draft: _Draft, queue: list[NodeView], paused: bool) -> RolloutPhase:
    if draft.failures:
        return RolloutPhase.DEGRADED
    if draft.steps:
        return RolloutPhase.PROGRESSING
    if queue:
        return RolloutPhase.PAUSED if paused else RolloutPhase.WAITING
    return RolloutPhase.COMPLETE


def plan(fleet: FleetView, now: datetime) -> Decision:
    """The next decision for `fleet` at `now` (see the module docstring for the rules)."""
    draft = _Draft()
    _carry_over(fleet, draft, now)
    in_step = {s.node for s in draft.steps}
    failed = {f.node for f in draft.failures}
    # A step dropped this pass keeps its place in the budget until the next: the mark that
    # takes its pod out of service may still land after the observation this pass used.
    unavailable = {n.name for n in fleet.nodes if not n.available} | in_step | draft.dropped
    queue = [n for n in order(fleet.nodes) if n.name not in in_step | failed]
    blocked = _start_steps(fleet, draft, queue, unavailable, now)
    if draft.waiting and not draft.failures:  # a running step is the more useful answer
        paused = ["paused"] if fleet.settings.paused else []
        blocked = "; ".join(draft.waiting + paused)

    phase = _phase(draft, queue, fleet.settings.paused)
    record = Record(steps=tuple(draft.steps), failures=tuple(draft.failures))
    changed = record != fleet.record
    if changed and phase == RolloutPhase.COMPLETE and fleet.record.steps:
        draft.notes.append(Note("RolloutComplete", f"every node of fleet {fleet.fleet} is updated"))
    entries = tuple(
        PlanEntry(node=n.name, reasons=[str(r) for r in reasons(n)], unavailable=not n.available)
        for n in queue[:MAX_PLAN_ENTRIES]
    )
    return Decision(
        record=record,
        actions=tuple(draft.actions),
        notes=tuple(draft.notes) if changed else (),
        plan=entries,
        pending=len(queue),
        phase=phase,
        blocked_by=blocked,
        nodes=len(fleet.nodes),
        updated=sum(1 for n in fleet.nodes if n.on_target and n.available),
        unavailable=len(unavailable),
        rejoining=draft.rejoining,
    )
