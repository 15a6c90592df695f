"""Table tests of the rolling-restart planner: one observed fleet in, one decision out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from marketplace_operator.model.fleet import (
    MAX_STEPS,
    MarketplaceFleetStatus,
    RolloutFailure,
    RolloutPhase,
    RolloutStep,
    StepPhase,
)
from marketplace_operator.rollout import planner, status
from marketplace_operator.rollout.observation import (
    Drain,
    FleetSettings,
    FleetView,
    NodeView,
    PodView,
    Record,
    Revision,
)
from marketplace_operator.rollout.planner import DeletePod, DrainNode, MarkLeaving

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OLD = Revision("old")
NEW = Revision("new")
GRACE = timedelta(seconds=30)
SETTINGS = FleetSettings(step_timeout=timedelta(seconds=60), settle=timedelta(seconds=1))


def pod(rev: Revision = OLD, uid: str = "", **kw: object) -> PodView:
    return PodView(revision=rev, uid=uid or f"uid-{rev.template_hash}", **kw)  # type: ignore[arg-type]


def node(name: str, desired: Revision = NEW, p: PodView | None = None) -> NodeView:
    return NodeView(name=name, desired=desired, pod=p if p is not None else pod(), grace=GRACE)


EMPTY = Record()


def fleet(*nodes: NodeView, record: Record = EMPTY, **settings: object) -> FleetView:
    return FleetView("f", tuple(nodes), replace(SETTINGS, **settings), record)  # type: ignore[arg-type]


def step(
    name: str, phase: StepPhase = StepPhase.DRAINING, since: datetime = T0, target: str = "new"
) -> RolloutStep:
    return RolloutStep(
        node=name,
        phase=phase,
        target_hash=target,
        reasons=["TemplateChanged"],
        started_at=since,
        phase_since=since,
    )


def up_to_date(name: str) -> NodeView:
    return node(name, NEW, pod(NEW))


# --- which nodes need a new pod, and in what order -------------------------------------------


@pytest.mark.parametrize(
    ("desired", "pod_rev", "expected"),
    [
        (Revision("a"), Revision("a"), ()),
        (Revision("b"), Revision("a"), (planner.Reason.TEMPLATE_CHANGED,)),
        (Revision("b", "t1"), Revision("a"), (planner.Reason.RESTART_REQUESTED,)),
        (Revision("b", "t2"), Revision("a", "t1"), (planner.Reason.RESTART_REQUESTED,)),
        (Revision("b", "t1"), Revision("a", "t1"), (planner.Reason.TEMPLATE_CHANGED,)),
        (Revision("a", "t1"), Revision("a", "t1"), ()),
        (Revision("a", "t1"), Revision("a"), ()),  # the hash covers the token
    ],
)
def test_reasons(desired: Revision, pod_rev: Revision, expected: tuple[planner.Reason]) -> None:
    assert planner.reasons(node("n", desired, pod(pod_rev))) == expected


def test_nodes_without_a_pod_or_with_a_leaving_pod_are_not_steps() -> None:
    assert planner.reasons(NodeView("n", NEW, None)) == ()
    assert planner.reasons(node("n", NEW, pod(OLD, deleting=True))) == ()


def test_order_puts_unavailable_nodes_first_then_names() -> None:
    nodes = (
        node("c"),
        node("a"),
        node("d", p=pod(ready=False)),
        up_to_date("b"),
        node("e", p=pod(joined=False)),
    )
    assert [n.name for n in planner.order(nodes)] == ["d", "e", "a", "c"]


# --- a step, stage by stage ----------------------------------------------------------------


def test_idle_fleet_is_complete_and_does_nothing() -> None:
    d = planner.plan(fleet(up_to_date("a"), up_to_date("b")), T0)
    assert d.phase == RolloutPhase.COMPLETE
    assert d.actions == ()
    assert d.record == Record()
    assert (d.updated, d.unavailable, d.pending) == (2, 0, 0)


def test_first_step_is_recorded_and_takes_the_first_node_out_of_service() -> None:
    d = planner.plan(fleet(node("b"), node("a"), up_to_date("c")), T0)
    assert d.phase == RolloutPhase.PROGRESSING
    assert [(s.node, s.phase) for s in d.record.steps] == [("a", StepPhase.LEAVING)]
    assert d.record.steps[0].reasons == ["TemplateChanged"]
    assert d.actions == (MarkLeaving("a", "uid-old"),)
    assert [e.node for e in d.plan] == ["b"]
    assert d.unavailable == 1
    assert d.blocked_by == "a: taking it out of service"
    assert [n.reason for n in d.notes] == ["RolloutStepStarted"]


def test_leaving_is_asked_again_until_the_pod_is_unready() -> None:
    rec = Record(steps=(step("a", StepPhase.LEAVING),))
    marked_but_ready = node("a", p=pod(leaving=True))
    d = planner.plan(fleet(marked_but_ready, record=rec), T0 + timedelta(seconds=5))
    assert d.actions == (MarkLeaving("a", "uid-old"),)
    assert d.record == rec


def test_an_unready_leaving_pod_is_drained_after_settle() -> None:
    rec = Record(steps=(step("a", StepPhase.LEAVING),))
    out = node("a", p=pod(leaving=True, ready=False))
    d = planner.plan(fleet(out, record=rec), T0 + timedelta(milliseconds=500))
    assert d.actions == ()
    assert "load balancers" in (d.blocked_by or "")
    now = T0 + timedelta(seconds=1)
    d = planner.plan(fleet(out, record=rec), now)
    (s,) = d.record.steps
    assert (s.phase, s.phase_since) == (StepPhase.DRAINING, now)
    assert d.actions == (DrainNode("a", "uid-old", 30.0),)


@pytest.mark.parametrize(
    ("routed", "after", "drains"),
    [
        (False, timedelta(0), True),  # dropped from the slices: drain at once
        (None, timedelta(milliseconds=100), False),  # slices unknown: wait for settle
        (None, timedelta(seconds=1), True),  # ... at most settle
        (True, timedelta(milliseconds=900), False),  # still routed: wait ...
        (True, timedelta(seconds=1), False),  # ... past settle: its Ready came late
        (True, planner.ROUTED_WAIT, True),  # ... but at most ROUTED_WAIT
    ],
)
def test_an_unready_leaving_pod_is_drained_once_load_balancers_dropped_it(
    routed: bool | None, after: timedelta, drains: bool
) -> None:
    rec = Record(steps=(step("a", StepPhase.LEAVING),))
    out = node("a", p=pod(leaving=True, ready=False, routed=routed))
    d = planner.plan(fleet(out, record=rec), T0 + after)
    assert (d.actions == (DrainNode("a", "uid-old", 30.0),)) is drains
    assert d.record.steps[0].phase == (StepPhase.DRAINING if drains else StepPhase.LEAVING)


def test_a_ready_pod_is_not_drained_even_when_unrouted() -> None:
    rec = Record(steps=(step("a", StepPhase.LEAVING),))
    still_ready = node("a", p=pod(leaving=True, ready=True, routed=False))
    d = planner.plan(fleet(still_ready, record=rec), T0 + timedelta(seconds=5))
    assert d.actions == (MarkLeaving("a", "uid-old"),)


def test_a_pod_that_never_leaves_fails_the_step() -> None:
    rec = Record(steps=(step("a", StepPhase.LEAVING),))
    stubborn = node("a", p=pod(leaving=True))
    d = planner.plan(fleet(stubborn, record=rec), T0 + GRACE + SETTINGS.step_timeout)
    assert [f.reason for f in d.record.failures] == ["LeaveRefused"]
    assert d.actions == ()


@pytest.mark.parametrize("late", [timedelta(0), GRACE + SETTINGS.step_timeout])
def test_a_leaving_step_whose_node_is_already_on_target_is_skipped(late: timedelta) -> None:
    """Replaced meanwhile by someone else: no LeaveRefused (the next pass would drop it as
    resolved, so the decision would not be a fixed point) and no MarkLeaving."""
    rec = Record(steps=(step("a", StepPhase.LEAVING),))
    d = planner.plan(fleet(up_to_date("a"), record=rec), T0 + late)
    assert d.record == Record()
    assert d.actions == ()
    assert [n.reason for n in d.notes] == ["RolloutStepSkipped", "RolloutComplete"]


def test_a_skipped_step_keeps_its_place_in_the_budget_for_its_pass_only() -> None:
    """The mark sent to a skipped step's pod may land after the look that skipped it: that
    pass starts nothing in its place; the next one does."""
    rec = Record(steps=(step("a", StepPhase.LEAVING),))
    waiting = node("b", p=pod(ready=True, joined=True))
    first = planner.plan(fleet(up_to_date("a"), waiting, record=rec, max_unavailable=1), T0)
    assert first.record == Record()
    assert first.actions == ()
    again = planner.plan(
        fleet(up_to_date("a"), waiting, record=first.record, max_unavailable=1), T0
    )
    assert [s.node for s in again.record.steps] == ["b"]


def test_a_leaving_pod_that_vanishes_moves_on_to_replacing() -> None:
    rec = Record(steps=(step("a", StepPhase.LEAVING),))
    d = planner.plan(fleet(NodeView("a", NEW, None, GRACE), record=rec), T0)
    assert d.record.steps[0].phase == StepPhase.REPLACING


def test_draining_node_is_asked_again_until_it_reports_draining() -> None:
    rec = Record(steps=(step("a"),))
    d = planner.plan(fleet(node("a", p=pod(drain=Drain.UNKNOWN)), record=rec), T0)
    assert d.actions == (DrainNode("a", "uid-old", 30.0),)
    assert d.record == rec
    assert d.notes == ()
    d = planner.plan(fleet(node("a", p=pod(drain=Drain.DRAINING)), record=rec), T0)
    assert d.actions == ()
    assert "in-flight" in (d.blocked_by or "")


def test_drained_but_still_ready_waits_for_readiness_to_drop() -> None:
    rec = Record(steps=(step("a"),))
    d = planner.plan(fleet(node("a", p=pod(drain=Drain.DRAINED)), record=rec), T0)
    assert d.record == rec
    assert d.actions == ()


def test_drained_and_unready_moves_to_replacing_and_deletes() -> None:
    rec = Record(steps=(step("a"),))
    drained = node("a", p=pod(drain=Drain.DRAINED, ready=False, leaving=True))
    now = T0 + timedelta(seconds=5)
    d = planner.plan(fleet(drained, record=rec), now)
    (s,) = d.record.steps
    assert (s.phase, s.phase_since, s.started_at) == (StepPhase.REPLACING, now, T0)
    assert d.actions == (DeletePod("a", "uid-old", 30.0),)
    assert [n.reason for n in d.notes] == ["NodeDrained"]


def test_a_node_that_keeps_serving_is_not_deleted_and_halts_the_rollout() -> None:
    rec = Record(steps=(step("a"),))
    serving = node("a", p=pod(drain=Drain.SERVING))
    d = planner.plan(fleet(serving, node("b"), record=rec), T0 + GRACE)
    assert d.record == rec
    assert d.actions == (DrainNode("a", "uid-old", 30.0),)
    d = planner.plan(fleet(serving, node("b"), record=rec), T0 + GRACE + SETTINGS.step_timeout)
    assert [f.reason for f in d.record.failures] == ["DrainRefused"]
    assert d.actions == ()


def test_drain_deadline_bounds_a_stuck_drain() -> None:
    rec = Record(steps=(step("a"),))
    stuck = node("a", p=pod(drain=Drain.DRAINING))
    assert planner.plan(fleet(stuck, record=rec), T0 + GRACE - timedelta(seconds=1)).actions == ()
    d = planner.plan(fleet(stuck, record=rec), T0 + GRACE)
    assert d.record.steps[0].phase == StepPhase.REPLACING


@pytest.mark.parametrize(
    ("p", "waiting"),
    [
        (None, "waiting for the new pod"),
        (pod(OLD, deleting=True, ready=False), "terminating"),
        (pod(NEW, uid="u2", ready=False, joined=False), "Ready and joined"),
        (pod(NEW, uid="u2", ready=True, joined=False), "Ready and joined"),
    ],
)
def test_replacing_waits_for_the_new_pod(p: PodView | None, waiting: str) -> None:
    rec = Record(steps=(step("a", StepPhase.REPLACING),))
    d = planner.plan(fleet(NodeView("a", NEW, p, GRACE), node("b"), record=rec), T0)
    assert d.actions == ()
    assert d.record == rec
    assert waiting in (d.blocked_by or "")
    assert [e.node for e in d.plan] == ["b"]


def test_new_pod_ready_and_joined_completes_the_step_and_starts_the_next() -> None:
    rec = Record(steps=(step("a", StepPhase.REPLACING),))
    d = planner.plan(fleet(node("a", p=pod(NEW, uid="u2")), node("b"), record=rec), T0)
    assert [(s.node, s.phase) for s in d.record.steps] == [("b", StepPhase.LEAVING)]
    assert d.actions == (MarkLeaving("b", "uid-old"),)
    assert [n.reason for n in d.notes] == ["NodeReplaced", "RolloutStepStarted"]


def test_last_step_completes_the_rollout() -> None:
    rec = Record(steps=(step("a", StepPhase.REPLACING),))
    d = planner.plan(fleet(node("a", p=pod(NEW, uid="u2")), record=rec), T0)
    assert d.phase == RolloutPhase.COMPLETE
    assert d.record == Record()
    assert [n.reason for n in d.notes] == ["NodeReplaced", "RolloutComplete"]


def test_a_drained_pod_on_the_desired_revision_is_still_replaced() -> None:
    """The spec reverted while the old pod drained: a drained pod never serves again."""
    rec = Record(steps=(step("a", StepPhase.REPLACING),))
    drained = node("a", p=pod(NEW, drain=Drain.DRAINED, ready=False))
    d = planner.plan(fleet(drained, record=rec), T0)
    assert d.actions == (DeletePod("a", "uid-new", 30.0),)


def test_spec_change_mid_step_retargets_it() -> None:
    rec = Record(steps=(step("a", StepPhase.REPLACING),))
    newer = Revision("newer")
    d = planner.plan(fleet(node("a", newer, pod(NEW, uid="u2")), record=rec), T0)
    assert d.record.steps[0].target_hash == "newer"
    d = planner.plan(fleet(node("a", newer, pod(newer, uid="u3")), record=d.record), T0)
    assert d.record == Record()


def test_node_deleted_during_its_step_drops_the_step() -> None:
    d = planner.plan(fleet(node("b"), record=Record(steps=(step("a"),))), T0)
    assert [s.node for s in d.record.steps] == ["b"]


def test_an_unavailable_node_is_deleted_without_leaving_or_draining() -> None:
    d = planner.plan(fleet(node("a", p=pod(ready=False, joined=False))), T0)
    assert d.record.steps[0].phase == StepPhase.REPLACING
    assert d.actions == (DeletePod("a", "uid-old", 30.0),)


def test_a_leaving_pod_on_the_desired_revision_is_still_replaced() -> None:
    rec = Record(steps=(step("a", StepPhase.REPLACING),))
    marked = node("a", p=pod(NEW, leaving=True, ready=False))
    assert planner.plan(fleet(marked, record=rec), T0).actions == (DeletePod("a", "uid-new", 30.0),)


# --- the budget ------------------------------------------------------------------------------


def test_an_unready_node_that_needs_nothing_uses_the_budget() -> None:
    d = planner.plan(fleet(node("a"), NodeView("b", NEW, pod(NEW, ready=False), GRACE)), T0)
    assert d.record == Record()
    assert d.actions == ()
    assert d.phase == RolloutPhase.WAITING
    assert d.blocked_by == "1 of maxUnavailable 1 nodes unavailable (b)"


def test_a_node_without_a_pod_uses_the_budget() -> None:
    d = planner.plan(fleet(node("a"), NodeView("b", NEW, None, GRACE)), T0)
    assert d.actions == ()


def test_an_unavailable_candidate_is_replaced_even_when_the_budget_is_spent() -> None:
    """Replacing a node that is already out costs nothing; waiting would only deadlock."""
    broken = (node("a", p=pod(ready=False)), node("b", p=pod(ready=False)), node("c"))
    d = planner.plan(fleet(*broken), T0)
    assert [s.node for s in d.record.steps] == ["a"]  # still one step at a time
    assert [e.node for e in d.plan] == ["b", "c"]


def test_max_unavailable_two_runs_two_steps() -> None:
    d = planner.plan(fleet(node("a"), node("b"), node("c"), max_unavailable=2), T0)
    assert [s.node for s in d.record.steps] == ["a", "b"]
    assert {a.node for a in d.actions} == {"a", "b"}
    assert d.unavailable == 2


@pytest.mark.parametrize(("budget", "steps"), [(100, 100), (1000, MAX_STEPS)])
def test_a_large_budget_runs_at_most_max_steps_at_once(budget: int, steps: int) -> None:
    """10% of 1,000 nodes is 100 steps at once; a larger budget stops at the status list's
    bound (the PDB still allows the whole budget)."""
    nodes = [node(f"n{i:04}") for i in range(1000)]
    d = planner.plan(fleet(*nodes, max_unavailable=budget), T0)
    assert len(d.record.steps) == steps == d.unavailable
    again = planner.plan(fleet(*nodes, max_unavailable=budget, record=d.record), T0)
    assert again.record.steps == d.record.steps  # the bound holds on every pass
    MarketplaceFleetStatus(steps=list(d.record.steps))  # and the status can hold them


def test_max_unavailable_two_with_one_node_down_runs_one_step() -> None:
    nodes = (node("a"), node("b"), NodeView("z", NEW, pod(NEW, ready=False), GRACE))
    d = planner.plan(fleet(*nodes, max_unavailable=2), T0)
    assert [s.node for s in d.record.steps] == ["a"]


def test_a_draining_node_outside_the_rollout_uses_the_budget() -> None:
    d = planner.plan(fleet(node("a"), NodeView("b", NEW, pod(NEW, drain=Drain.DRAINING))), T0)
    assert d.actions == ()


# --- failure and resumption --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "reason"),
    [
        (None, "PodNotCreated"),
        (pod(NEW, uid="u2", ready=False, joined=False), "PodNotReady"),
        (pod(NEW, uid="u2", ready=True, joined=False), "NotJoined"),
        (pod(NEW, uid="u2", ready=False, failed=True), "PodFailed"),
        (pod(OLD, deleting=True, ready=False), "PodNotTerminated"),
    ],
)
def test_a_replacement_that_misses_the_deadline_halts_the_rollout(
    p: PodView | None, reason: str
) -> None:
    rec = Record(steps=(step("a", StepPhase.REPLACING),))
    crashing = NodeView("a", NEW, p, GRACE)
    deadline = T0 + GRACE + SETTINGS.step_timeout
    d = planner.plan(fleet(crashing, node("b"), record=rec), deadline - timedelta(seconds=1))
    assert d.record == rec
    d = planner.plan(fleet(crashing, node("b"), record=rec), deadline)
    assert d.phase == RolloutPhase.DEGRADED
    assert d.record.steps == ()
    (failure,) = d.record.failures
    assert (failure.node, failure.reason, failure.target_hash) == ("a", reason, "new")
    assert d.actions == ()  # no retry, and "b" is left alone
    assert [n.reason for n in d.notes] == ["RolloutStepFailed"]
    assert d.notes[0].warning
    assert "a failed" in (d.blocked_by or "")
    # and it stays halted: no loop, no cascade
    later = planner.plan(fleet(crashing, node("b"), record=d.record), deadline + timedelta(hours=1))
    assert later.record == d.record
    assert later.actions == ()


def _failed(name: str, target: str = "new") -> RolloutFailure:
    return RolloutFailure(node=name, target_hash=target, reason="PodNotReady", since=T0)


def test_fixing_the_spec_resumes_with_the_failed_node_first() -> None:
    rec = Record(failures=(_failed("b"),))
    fixed = Revision("fixed")
    crashing = node("b", fixed, pod(NEW, ready=False, joined=False))
    d = planner.plan(fleet(node("a"), crashing, record=rec), T0)
    assert d.record.failures == ()
    assert [s.node for s in d.record.steps] == ["b"]
    assert [n.reason for n in d.notes] == ["RolloutResumed", "RolloutStepStarted"]


def test_a_failed_node_that_recovers_on_its_own_resumes() -> None:
    rec = Record(failures=(_failed("b"),))
    d = planner.plan(fleet(node("a"), node("b", NEW, pod(NEW)), record=rec), T0)
    assert d.record.failures == ()
    assert [s.node for s in d.record.steps] == ["a"]


def test_a_deleted_failed_node_resumes() -> None:
    d = planner.plan(fleet(node("a"), record=Record(failures=(_failed("gone"),))), T0)
    assert [s.node for s in d.record.steps] == ["a"]


# --- pause ---------------------------------------------------------------------------------------


def test_pause_lets_the_running_step_finish_and_starts_nothing() -> None:
    rec = Record(steps=(step("a", StepPhase.REPLACING),))
    d = planner.plan(fleet(node("a", p=pod(NEW, uid="u2")), node("b"), record=rec, paused=True), T0)
    assert d.record == Record()
    assert d.phase == RolloutPhase.PAUSED
    assert d.blocked_by == "paused"
    assert [e.node for e in d.plan] == ["b"]  # its place is kept


def test_pause_during_a_step_keeps_progressing() -> None:
    rec = Record(steps=(step("a"),))
    d = planner.plan(fleet(node("a"), node("b"), record=rec, paused=True), T0)
    assert d.phase == RolloutPhase.PROGRESSING
    assert d.actions == (DrainNode("a", "uid-old", 30.0),)  # the running step goes on


# --- the record --------------------------------------------------------------------------------


def test_notes_only_accompany_a_change_of_the_record() -> None:
    d = planner.plan(fleet(node("a")), T0)
    again = planner.plan(fleet(node("a"), record=d.record), T0)
    assert again.notes == ()
    assert again.actions == d.actions


def test_a_duplicate_step_in_the_record_is_collapsed() -> None:
    rec = Record(steps=(step("a"), step("a")))
    d = planner.plan(fleet(node("a"), node("b"), record=rec), T0)
    assert [s.node for s in d.record.steps] == ["a"]


# --- the status written for a decision -----------------------------------------------------------


def test_status_carries_the_record_the_plan_and_conditions() -> None:
    d = planner.plan(fleet(node("a"), node("b"), up_to_date("c")), T0)
    st = status.build(MarketplaceFleetStatus(), d, now=T0, generation=3)
    assert [s.node for s in st.steps] == ["a"]
    assert [p.node for p in st.plan] == ["b"]
    assert (st.nodes, st.updated, st.unavailable, st.pending, st.current) == (3, 1, 1, 1, "a")
    progressing = {c.type: c for c in st.conditions}["Progressing"]
    assert (progressing.status, progressing.reason) == ("True", "RollingOut")
    assert "1/3 nodes updated" in progressing.message
    assert {c.type: c for c in st.conditions}["Degraded"].status == "False"
    # a later, unchanged status keeps the transition time
    later = status.build(st, d, now=T0 + timedelta(minutes=5), generation=3)
    assert later == st
    patch = status.as_patch(st)["status"]
    assert isinstance(patch, dict)
    assert patch["steps"][0]["phaseSince"] == "2026-01-01T00:00:00Z"


def test_the_fleet_reports_the_most_under_replicated_packages_any_node_reports() -> None:
    assert status.under_replicated([{"status": {}}, {}]) is None  # nobody reported yet
    mnodes = [{"status": {"underReplicated": 0}}, {"status": {"underReplicated": 7}}, {}]
    assert status.under_replicated(mnodes) == 7
    d = planner.plan(fleet(up_to_date("a")), T0)
    st = status.build(MarketplaceFleetStatus(), d, now=T0, generation=1, under=7)
    assert status.as_patch(st)["status"]["underReplicated"] == 7  # type: ignore[index]


def test_status_of_a_failed_rollout_is_degraded() -> None:
    rec = Record(
        failures=(
            RolloutFailure(
                node="a", target_hash="new", reason="PodNotReady", message="boom", since=T0
            ),
        )
    )
    d = planner.plan(fleet(node("a", p=pod(NEW, ready=False)), node("b"), record=rec), T0)
    st = status.build(MarketplaceFleetStatus(), d, now=T0, generation=1)
    conds = {c.type: c for c in st.conditions}
    assert (conds["Degraded"].status, conds["Degraded"].reason) == ("True", "PodNotReady")
    assert "a: boom" in conds["Degraded"].message
    assert (conds["Progressing"].status, conds["Progressing"].reason) == ("False", "StepFailed")


# --- membership ---------------------------------------------------------------------------------


def member(name: str, peers: set[str] | None, p: PodView | None = None, count: int = 0) -> NodeView:
    got = p if p is not None else pod()
    listed = frozenset(peers) if peers is not None else None
    n = count or (len(peers) if peers is not None else 0)
    return NodeView(name, NEW, got, GRACE, peer_id=f"id-{name}", peers=listed, peer_count=n)


def test_a_step_waits_while_it_would_take_a_nodes_last_peer() -> None:
    nodes = (
        member("a", {"id-c"}),
        member("b", {"id-c"}, pod(NEW)),  # updated, but connected only to "a"'s neighbour c
        member("c", {"id-a", "id-b"}),
    )
    d = planner.plan(fleet(*nodes), T0)
    assert [s.node for s in d.record.steps] == ["a"]  # a is not anyone's only peer
    assert d.rejoining is None
    rec = Record()
    lonely = (
        member("a", {"id-b"}, pod(NEW)),
        member("b", {"id-a"}),
        member("c", {"id-b"}, pod(NEW)),
    )
    d = planner.plan(fleet(*lonely, record=rec), T0)
    assert d.record == Record()
    assert d.actions == ()
    assert d.blocked_by is not None
    assert "connected only to nodes that would be out" in d.blocked_by
    assert d.rejoining in {"a", "c"}  # whose status the caller refreshes now


def test_a_fleet_of_two_rolls_although_each_node_is_the_others_only_peer() -> None:
    # Waiting for b to re-join someone else cannot help: there is nobody else.
    pair = (member("a", {"id-b"}), member("b", {"id-a"}))
    d = planner.plan(fleet(*pair), T0)
    assert [s.node for s in d.record.steps] == ["a"]
    assert d.rejoining is None
    # The same when maxUnavailable takes out every other member of a larger fleet.
    trio = (member("a", {"id-b"}), member("b", {"id-c"}), member("c", {"id-a", "id-b"}))
    d = planner.plan(fleet(*trio, max_unavailable=2), T0)
    assert [s.node for s in d.record.steps] == ["a", "b"]


def test_unknown_or_truncated_peer_lists_do_not_block() -> None:
    unknown = (member("a", None, pod(NEW)), member("b", {"id-a"}))
    assert planner.plan(fleet(*unknown), T0).record.steps[0].node == "b"
    truncated = (member("a", {"id-b"}, pod(NEW), count=40), member("b", {"id-a"}))
    assert planner.plan(fleet(*truncated), T0).record.steps[0].node == "b"


def test_peers_outside_the_fleet_do_not_count_as_membership() -> None:
    nodes = (
        member("a", {"id-b", "stranger"}, pod(NEW)),
        member("b", {"id-a", "id-c"}),
        member("c", {"id-b"}, pod(NEW)),
    )
    assert planner.plan(fleet(*nodes), T0).actions == ()
