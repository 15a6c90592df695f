"""Property tests of the planner: arbitrary observations, and whole simulated rollouts.

The simulator plays the cluster (kubelet, node drain, the node reconcile that
creates missing pods) with random delays, and the operator with random
crashes between writing a record and acting on it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from marketplace_operator.model.fleet import RolloutFailure, RolloutPhase, RolloutStep, StepPhase
from marketplace_operator.rollout import planner
from marketplace_operator.rollout.observation import (
    Drain,
    FleetSettings,
    FleetView,
    NodeView,
    PodView,
    Record,
    Revision,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TICK = timedelta(seconds=1)
NAMES = ["n0", "n1", "n2", "n3", "n4", "n5", "n6"]
REVS = [Revision("a"), Revision("b"), Revision("a", "r1"), Revision("b", "r2")]

# --- arbitrary observations --------------------------------------------------------------------

pods = st.builds(
    PodView,
    revision=st.sampled_from(REVS),
    uid=st.sampled_from(["u1", "u2", "u3"]),
    ready=st.booleans(),
    joined=st.booleans(),
    deleting=st.booleans(),
    failed=st.booleans(),
    drain=st.sampled_from(list(Drain)),
)
times = st.integers(min_value=0, max_value=600).map(lambda s: T0 + timedelta(seconds=s))
steps = st.fixed_dictionaries(
    {
        "node": st.sampled_from(NAMES),
        "phase": st.sampled_from(list(StepPhase)),
        "target_hash": st.sampled_from(["a", "b"]),
        "target_restart": st.sampled_from([None, "r1", "r2"]),
        "reasons": st.just(["TemplateChanged"]),
        "started_at": times,
        "phase_since": times,
    }
).map(lambda kw: RolloutStep(**kw))
failures = st.fixed_dictionaries(
    {
        "node": st.sampled_from(NAMES),
        "target_hash": st.sampled_from(["a", "b"]),
        "reason": st.just("PodNotReady"),
        "since": times,
    }
).map(lambda kw: RolloutFailure(**kw))


@st.composite
def fleets(draw: st.DrawFn) -> FleetView:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=0, max_size=len(NAMES), unique=True))
    nodes = tuple(
        NodeView(
            name,
            draw(st.sampled_from(REVS)),
            draw(st.none() | pods),
            timedelta(seconds=draw(st.integers(1, 60))),
            peer_id=f"id-{name}",
            peers=draw(st.none() | st.frozensets(st.sampled_from([f"id-{n}" for n in NAMES]))),
        )
        for name in names
    )
    fleet_settings = FleetSettings(
        max_unavailable=draw(st.integers(1, 3)),
        paused=draw(st.booleans()),
        step_timeout=timedelta(seconds=draw(st.integers(5, 120))),
        settle=timedelta(seconds=draw(st.integers(0, 3))),
    )
    max_steps = fleet_settings.max_unavailable
    record = Record(
        steps=tuple(draw(st.lists(steps, max_size=max_steps, unique_by=lambda s: s.node))),
        failures=tuple(draw(st.lists(failures, max_size=2, unique_by=lambda f: f.node))),
    )
    return FleetView("f", nodes, fleet_settings, record)


@settings(max_examples=600, deadline=None)
@given(fleets(), times)
def test_a_decision_is_a_fixed_point(fleet: FleetView, now: datetime) -> None:
    """Planning again with the decision's own record (an operator that crashed after writing
    it) gives the same record and actions: resuming never starts another step.

    Except after a step dropped as already on target: it keeps its place in the budget for
    the pass that dropped it only (its mark may still land after that pass's look), so the
    next pass may start another step; a property the planner does not promise."""
    first = planner.plan(fleet, now)
    assume(not any(note.reason == "RolloutStepSkipped" for note in first.notes))
    again = planner.plan(replace(fleet, record=first.record), now)
    assert again.record == first.record
    assert again.actions == first.actions
    assert again.notes == ()
    assert planner.plan(fleet, now) == first  # and plainly deterministic


def _serving(revision: Revision) -> PodView:
    return PodView(revision=revision, uid="u1", ready=True, joined=True, drain=Drain.SERVING)


# Found by this test: n2's only peer n1 may go, as n0 is out and nobody else could re-join it.
LAST_IN_SERVICE = FleetView(
    "f",
    (
        NodeView("n0", Revision("a"), None, TICK, peer_id="id-n0"),
        NodeView("n1", Revision("a"), _serving(Revision("b")), TICK, peer_id="id-n1"),
        NodeView("n2", Revision("a"), _serving(Revision("a")), TICK, "id-n2", frozenset({"id-n1"})),
    ),
    FleetSettings(max_unavailable=2, step_timeout=timedelta(seconds=5), settle=timedelta(0)),
    Record(),
)


# Found by this test (session 15): n1's step is dropped (n1 is back on target and serving)
# while the mark that takes it out of service may still be landing; n0 must wait a pass.
DROPPED_WHILE_LEAVING = FleetView(
    "f",
    (
        NodeView("n1", Revision("a"), _serving(Revision("a")), TICK, peer_id="id-n1"),
        NodeView("n0", Revision("a"), _serving(Revision("b")), TICK, peer_id="id-n0"),
    ),
    FleetSettings(max_unavailable=1, step_timeout=timedelta(seconds=5), settle=timedelta(0)),
    Record(
        steps=(
            RolloutStep(
                node="n1", phase=StepPhase.LEAVING, target_hash="a", reasons=["TemplateChanged"],
                started_at=T0, phase_since=T0,
            ),
        )
    ),
)  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(fleets(), times)
@example(LAST_IN_SERVICE, T0)
@example(DROPPED_WHILE_LEAVING, T0)
def test_never_takes_an_available_node_beyond_the_budget(fleet: FleetView, now: datetime) -> None:
    decision = planner.plan(fleet, now)
    budget = fleet.settings.max_unavailable
    by_name = {n.name: n for n in fleet.nodes}
    before = {s.node for s in fleet.record.steps}
    started = [s.node for s in decision.record.steps if s.node not in before]
    taken = [n for n in started if by_name[n].available]
    already_out = {n.name for n in fleet.nodes if not n.available} | (before & set(by_name))
    if taken:
        assert len(already_out) + len(taken) <= budget
        assert not fleet.settings.paused
        assert not decision.record.failures
    if started:
        assert len(decision.record.steps) <= budget
    out = {n.name for n in fleet.nodes if not n.available} | {s.node for s in decision.record.steps}
    gone = {by_name[n].peer_id for n in out if n in by_name}
    staying = {n.name for n in fleet.nodes if n.available and n.name not in out}
    for node in fleet.nodes:  # nobody in service loses its last fleet peer to a new step...
        if not taken or node.name in out or not node.peers:
            continue
        if not staying - {node.name}:
            continue  # ...unless no other member stays in service to re-join (waiting is endless)
        linked = node.peers & {n.peer_id for n in fleet.nodes}
        assert not linked or not linked <= gone or linked <= already_out_ids(fleet), node
    for action in decision.actions:
        pod = by_name[action.node].pod
        assert pod is not None
        assert action.pod_uid == pod.uid  # acts on the pod it saw, never a newer one
        assert action.node in {s.node for s in decision.record.steps}  # recorded before acting


def already_out_ids(fleet: FleetView) -> set[str | None]:
    out = {n.name for n in fleet.nodes if not n.available} | {s.node for s in fleet.record.steps}
    return {n.peer_id for n in fleet.nodes if n.name in out}


# --- whole rollouts, simulated -------------------------------------------------------------------


@dataclass
class SimPod:
    rev: Revision
    uid: str
    ready_at: int | None  # tick when Ready and joined (None: never, it crash-loops)
    leave_at: int | None = None  # tick when its gate went off (readiness drops then)
    drain_at: int | None = None  # tick when drained
    gone_at: int | None = None  # tick when a deleted pod disappears


class Cluster:
    """Kubelet, node processes and the node reconcile, with random but bounded delays."""

    def __init__(self, rng: random.Random, desired: dict[str, Revision], broken: set[str]):
        self.rng = rng
        self.t = 0
        self.desired = desired
        self.broken = broken  # template hashes whose pods never become ready
        self.serial = 0
        self.pods: dict[str, SimPod | None] = {
            n: self._new_pod(n, Revision("old"), 0) for n in desired
        }
        self.deleted_uids: list[str] = []
        self.deleted_while_serving: list[str] = []
        self.drained_while_serving: list[str] = []

    def _new_pod(self, name: str, rev: Revision, delay: int) -> SimPod:
        self.serial += 1
        ready = None if rev.template_hash in self.broken else self.t + delay
        return SimPod(rev, f"{name}-{self.serial}", ready)

    def view(self, name: str) -> NodeView:
        p = self.pods[name]
        grace = timedelta(seconds=10)
        if p is None:
            return NodeView(name, self.desired[name], None, grace)
        up = p.ready_at is not None and p.ready_at <= self.t
        drained = p.drain_at is not None and p.drain_at <= self.t
        out = p.leave_at is not None and p.leave_at <= self.t
        drain = (
            Drain.SERVING if p.drain_at is None else Drain.DRAINED if drained else Drain.DRAINING
        )
        pod = PodView(
            p.rev,
            p.uid,
            ready=up and not drained and not out,
            joined=up and not out,
            deleting=p.gone_at is not None,
            leaving=p.leave_at is not None,
            drain=drain,
        )
        return NodeView(name, self.desired[name], pod, grace)

    def act(self, action: planner.Action) -> None:
        p = self.pods[action.node]
        if p is None or p.uid != action.pod_uid:
            return  # the uid precondition of the real API
        view = self.view(action.node).pod
        serving = view is not None and view.ready
        if isinstance(action, planner.MarkLeaving):
            if p.leave_at is None:
                p.leave_at = self.t + self.rng.randint(0, 2)
        elif isinstance(action, planner.DrainNode):
            if serving:
                self.drained_while_serving.append(p.uid)  # clients would see refusals
            if p.drain_at is None:
                p.drain_at = self.t + self.rng.randint(0, 4)
        elif p.gone_at is None:
            if serving:
                self.deleted_while_serving.append(p.uid)
            p.gone_at = self.t + self.rng.randint(0, 4)
            self.deleted_uids.append(p.uid)

    def tick(self) -> None:
        self.t += 1
        for name, p in self.pods.items():
            if p is not None and p.gone_at is not None and p.gone_at <= self.t:
                self.pods[name] = None
            elif p is None and self.rng.random() < 0.7:  # the node reconcile creates pods
                self.pods[name] = self._new_pod(name, self.desired[name], self.rng.randint(1, 6))


@dataclass
class Run:
    cluster: Cluster
    decisions: list[planner.Decision]
    max_unavailable_seen: int
    initial_uids: dict[str, str]


def simulate(
    rng: random.Random, n: int, budget: int, broken: set[str], crash_rate: float, ticks: int
) -> Run:
    names = NAMES[:n]
    cluster = Cluster(rng, {name: Revision("new") for name in names}, broken)
    for p in cluster.pods.values():
        assert p is not None
        p.ready_at = 0
    initial = {name: p.uid for name, p in cluster.pods.items() if p is not None}
    fleet_settings = FleetSettings(
        max_unavailable=budget, step_timeout=timedelta(seconds=30), settle=timedelta(seconds=1)
    )
    record = Record()
    decisions = []
    worst = 0
    crashes = 0
    for _ in range(ticks):
        fleet = FleetView("f", tuple(cluster.view(name) for name in names), fleet_settings, record)
        worst = max(worst, sum(1 for node in fleet.nodes if not node.available))
        decision = planner.plan(fleet, T0 + cluster.t * TICK)
        decisions.append(decision)
        record = decision.record  # written before acting
        if rng.random() < crash_rate and crashes < 2:  # killed between writing and acting
            crashes += 1
        else:  # (a killed operator restarts: at most two crashes in a row)
            crashes = 0
            for action in decision.actions:
                cluster.act(action)
        cluster.tick()
    return Run(cluster, decisions, worst, initial)


@settings(max_examples=60, deadline=None)
@given(
    st.randoms(use_true_random=False),
    st.integers(1, 6),
    st.integers(1, 3),
    st.sampled_from([0.0, 0.3, 0.6]),
)
def test_a_rollout_completes_within_budget_and_monotonically(
    rng: random.Random, n: int, budget: int, crash_rate: float
) -> None:
    run = simulate(rng, n, budget, broken=set(), crash_rate=crash_rate, ticks=60 * n)
    assert run.max_unavailable_seen <= budget
    last = run.decisions[-1]
    assert last.phase == RolloutPhase.COMPLETE, last.blocked_by
    assert last.updated == n
    assert last.record == Record()
    updated = [d.updated for d in run.decisions]
    pending = [d.pending + len(d.record.steps) for d in run.decisions]
    assert updated == sorted(updated), "a node once updated was never taken down again"
    assert pending == sorted(pending, reverse=True), "the work left never grows"
    assert sorted(run.cluster.deleted_uids) == sorted(run.initial_uids.values())  # each once
    assert run.cluster.deleted_while_serving == []  # out of service and drained first
    assert run.cluster.drained_while_serving == []  # out of load balancers before refusing
    assert all(s <= budget for s in (len(d.record.steps) for d in run.decisions))


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(2, 6), st.sampled_from([0.0, 0.5]))
def test_a_crash_looping_replacement_halts_without_cascade(
    rng: random.Random, n: int, crash_rate: float
) -> None:
    run = simulate(rng, n, 1, broken={"new"}, crash_rate=crash_rate, ticks=200)
    last = run.decisions[-1]
    assert last.phase == RolloutPhase.DEGRADED
    (failure,) = last.record.failures
    assert failure.node == "n0"
    assert last.record.steps == ()
    assert run.cluster.deleted_uids == [run.initial_uids["n0"]]  # the others are untouched
    assert run.max_unavailable_seen == 1
    failed_notes = [m for d in run.decisions for m in d.notes if m.reason == "RolloutStepFailed"]
    assert len(failed_notes) == 1


@settings(max_examples=30, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(2, 5))
def test_fixing_the_spec_after_a_failure_completes_the_rollout(rng: random.Random, n: int) -> None:
    run = simulate(rng, n, 1, broken={"new"}, crash_rate=0.0, ticks=120)
    cluster = run.cluster
    assert run.decisions[-1].phase == RolloutPhase.DEGRADED
    for name in cluster.desired:
        cluster.desired[name] = Revision("fixed")
    record = run.decisions[-1].record
    fleet_settings = FleetSettings(step_timeout=timedelta(seconds=30))
    decision = run.decisions[-1]
    for _ in range(60 * n):
        fleet = FleetView(
            "f", tuple(cluster.view(name) for name in cluster.desired), fleet_settings, record
        )
        assert sum(1 for node in fleet.nodes if not node.available) <= 1
        decision = planner.plan(fleet, T0 + cluster.t * TICK)
        record = decision.record
        for action in decision.actions:
            cluster.act(action)
        cluster.tick()
    assert decision.phase == RolloutPhase.COMPLETE
    assert decision.updated == n
