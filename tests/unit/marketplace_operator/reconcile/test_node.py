"""`plan` and `build_status`: table tests over observed states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from marketplace_operator.model.common import ConditionStatus, find_condition
from marketplace_operator.model.mnode import (
    ConditionType,
    MarketplaceNodeSpec,
    MarketplaceNodeStatus,
    Phase,
)
from marketplace_operator.reconcile import node, status
from marketplace_operator.reconcile.observe import pod_view
from marketplace_operator.render import configmap, names, pod, pvc, secrets, service
from marketplace_protocol.admin import NodeStatus, PeerInfo

REF = names.NodeRef(name="n1", namespace="ns", uid="uid-1", fleet="blue")
FLEET_UID = "fleet-uid"
IMAGE = "ghcr.io/marketplace-fleet/node:0.1.0"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def spec(**fields: Any) -> MarketplaceNodeSpec:
    return MarketplaceNodeSpec.model_validate({"fleet": "blue", **fields})


def desired(s: MarketplaceNodeSpec | None = None, *, paused: bool = False) -> node.Desired:
    s = s or spec()
    return node.Desired(ref=REF, spec=s, pod_inputs=pod.PodInputs(IMAGE, s), paused=paused)


def pod_status(
    *,
    phase: str = "Running",
    ready: bool = True,
    containers_ready: bool = True,
    joined: bool = True,
    restarts: int = 0,
    waiting: str | None = None,
) -> dict[str, Any]:
    def c(t: str, v: bool) -> dict[str, str]:
        return {"type": t, "status": "True" if v else "False"}

    state: dict[str, Any] = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {
        "phase": phase,
        "podIP": "127.1.0.5",
        "conditions": [
            c("Ready", ready),
            c("ContainersReady", containers_ready),
            c(names.JOINED_CONDITION, joined),
        ],
        "containerStatuses": [{"name": "node", "restartCount": restarts, "state": state}],
    }


def existing(d: node.Desired, **pod_fields: Any) -> node.Observed:
    """Everything present and in order, as after a successful reconcile."""
    p = pod.pod(d.ref, d.pod_inputs)
    p["metadata"]["uid"] = "pod-uid"
    p["status"] = pod_status()
    p["metadata"].update(pod_fields.pop("meta", {}))
    p["status"].update(pod_fields)
    return node.Observed(
        pod=p,
        service=service.service(d.ref, d.spec),
        pvc={**pvc.data_pvc(d.ref, d.spec), "status": {"phase": "Bound"}},
        identity=secrets.identity_secret(d.ref, private_key_pem=b"k", peer_id="mpx"),
        admin_secret=secrets.admin_secret(d.ref, token="t", fleet_uid=FLEET_UID),
        policy_configmap=configmap.policy_configmap(d.ref, members="{}", fleet_uid=FLEET_UID),
    )


def kinds(actions: list[node.Action]) -> list[str]:
    out = []
    for a in actions:
        kind = getattr(a, "kind", None)
        out.append(type(a).__name__ + (f":{kind}" if kind else ""))
    return out


def test_empty_world_creates_everything_in_dependency_order() -> None:
    assert kinds(node.plan(desired(), node.Observed(), now=NOW)) == [
        "CreateAdminSecret",
        "Create:policy-configmap",
        "CreateIdentity",
        "Create:pvc",
        "Create:service",
        "WaitForVolume",
    ]


def claim(*, phase: str, age: timedelta) -> dict[str, Any]:
    born = (NOW - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        **pvc.data_pvc(REF, spec()),
        "status": {"phase": phase},
        "metadata": {**pvc.data_pvc(REF, spec())["metadata"], "creationTimestamp": born},
    }


@pytest.mark.parametrize(
    ("phase", "age", "creates_pod"),
    [
        ("Bound", timedelta(seconds=0), True),
        ("Pending", timedelta(seconds=1), False),
        ("Pending", node.PVC_BIND_GRACE - timedelta(seconds=1), False),
        ("Pending", node.PVC_BIND_GRACE, True),  # e.g. WaitForFirstConsumer: needs the pod
    ],
)
def test_pod_waits_for_its_volume_to_bind_when_the_class_is_unknown(
    phase: str, age: timedelta, creates_pod: bool
) -> None:
    d = desired()
    world = node.Observed(
        **{**existing(d).__dict__, "pod": None, "pvc": claim(phase=phase, age=age)}
    )
    assert kinds(node.plan(d, world, now=NOW)) == (
        ["Create:pod"] if creates_pod else ["WaitForVolume"]
    )


def test_converged_world_plans_nothing() -> None:
    d = desired()
    assert node.plan(d, existing(d), now=NOW) == []


def test_paused_plans_nothing_even_with_children_missing() -> None:
    assert node.plan(desired(paused=True), node.Observed(), now=NOW) == []


def test_identity_present_is_never_recreated_and_missing_one_is_created_once() -> None:
    d = desired()
    world = existing(d)
    assert not any(isinstance(a, node.CreateIdentity) for a in node.plan(d, world, now=NOW))
    gone = node.Observed(**{**world.__dict__, "identity": None})
    assert [a for a in node.plan(d, gone, now=NOW)] == [node.CreateIdentity()]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"phase": "Failed"}, "DeletePod"),
        ({"phase": "Succeeded"}, "DeletePod"),
        ({"meta": {"annotations": {names.TEMPLATE_HASH_ANNOTATION: "old"}}}, "ReplacePod"),
        ({"meta": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}, None),
        ({"phase": "Pending"}, None),
    ],
)
def test_pod_decisions(change: dict[str, Any], expected: str | None) -> None:
    d = desired()
    assert kinds(node.plan(d, existing(d, **change), now=NOW)) == ([expected] if expected else [])


def test_spec_change_that_shapes_the_pod_replaces_it_and_one_that_does_not_only_patches() -> None:
    old = desired()
    world = existing(old)
    assert kinds(node.plan(desired(spec(p2p={"maxPeers": 3})), world, now=NOW)) == ["ReplacePod"]
    grown = desired(spec(storage={"size": "2Gi"}))
    (patch,) = node.plan(grown, world, now=NOW)
    assert isinstance(patch, node.Patch)
    assert patch.patch == {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}


def test_port_change_patches_the_service_and_replaces_the_pod() -> None:
    world = existing(desired())
    actions = node.plan(desired(spec(p2p={"port": 7100})), world, now=NOW)
    assert kinds(actions) == ["Patch:service", "ReplacePod"]


def test_unowned_child_with_our_labels_is_adopted_and_a_foreign_one_is_a_conflict() -> None:
    d = desired()
    world = existing(d)
    assert world.service is not None
    orphan = {**world.service, "metadata": {**world.service["metadata"], "ownerReferences": []}}
    (adopt,) = node.plan(d, node.Observed(**{**world.__dict__, "service": orphan}), now=NOW)
    assert isinstance(adopt, node.Patch)
    assert adopt.why == "adopt"
    assert adopt.strategic
    assert adopt.patch["metadata"]["ownerReferences"][0]["uid"] == REF.uid
    foreign_meta = {
        **world.service["metadata"],
        "ownerReferences": [{"uid": "x", "controller": True}],
    }
    foreign = {**world.service, "metadata": foreign_meta}
    (conflict,) = node.plan(d, node.Observed(**{**world.__dict__, "service": foreign}), now=NOW)
    assert conflict == node.Conflict(node.Kind.SERVICE, "n1", "x")


def test_members_never_write_the_fleet_objects_ownership() -> None:
    """Issue 15: a member finding the fleet's objects owned by anyone (a node, as an older
    operator made them, or nobody yet) plans nothing for them; the fleet's loop owns that."""
    d = desired()
    world = existing(d)
    newcomer = node.Desired(
        ref=names.NodeRef(name="n2", namespace="ns", uid="uid-2", fleet="blue"),
        spec=d.spec,
        pod_inputs=d.pod_inputs,
    )
    legacy_meta = {"ownerReferences": [names.owner_reference(REF)]}
    assert world.admin_secret is not None
    assert world.policy_configmap is not None
    legacy = node.Observed(
        **{
            **world.__dict__,
            "admin_secret": {
                **world.admin_secret,
                "metadata": legacy_meta | {"name": "blue-admin"},
            },
            "policy_configmap": {
                **world.policy_configmap,
                "metadata": legacy_meta | {"name": "blue-policy"},
            },
            "fleet_uid": None,
        }
    )
    fleet_kinds = {node.Kind.FLEET_ADMIN, node.Kind.POLICY_CONFIGMAP}
    for who in (d, newcomer):
        for seen in (world, legacy):
            actions = node.plan(who, seen, now=NOW)
            assert not [a for a in actions if getattr(a, "kind", None) in fleet_kinds]
            assert not [a for a in actions if isinstance(a, node.CreateAdminSecret)]


def test_fleet_objects_are_created_owned_by_the_marketplacefleet() -> None:
    d = desired()
    actions = node.plan(d, node.Observed(fleet_uid=FLEET_UID), now=NOW)
    (admin,) = [a for a in actions if isinstance(a, node.CreateAdminSecret)]
    assert admin.fleet_uid == FLEET_UID
    (cm,) = [
        a for a in actions if isinstance(a, node.Create) and a.kind is node.Kind.POLICY_CONFIGMAP
    ]
    assert cm.body["metadata"]["ownerReferences"] == [
        names.fleet_owner_reference("blue", FLEET_UID)
    ]
    # Before the operator has made the MarketplaceFleet: created unowned, adopted later.
    early = node.plan(d, node.Observed(), now=NOW)
    assert node.CreateAdminSecret(fleet_uid=None) in early


@pytest.mark.parametrize(
    ("mode", "phase", "creates_pod"),
    [
        ("Immediate", "Pending", False),
        ("Immediate", "Bound", True),
        ("WaitForFirstConsumer", "Pending", True),
    ],
)
def test_binding_mode_decides_without_a_grace(mode: str, phase: str, creates_pod: bool) -> None:
    d = desired()
    old_claim = claim(phase=phase, age=node.PVC_BIND_GRACE * 10)
    world = node.Observed(
        **{**existing(d).__dict__, "pod": None, "pvc": old_claim, "binding_mode": mode}
    )
    assert kinds(node.plan(d, world, now=NOW)) == (
        ["Create:pod"] if creates_pod else ["WaitForVolume"]
    )


# --- joined -------------------------------------------------------------------------------


def node_status(*, peers: tuple[str, ...] = (), ready: bool = True, **kw: Any) -> NodeStatus:
    return NodeStatus(
        peer_id="mpself00",
        ready=ready,
        peers=[PeerInfo(peer_id=p, address="http://x:1") for p in peers],
        **kw,
    )


@pytest.mark.parametrize(
    ("node_st", "fleet_ids", "others", "policy", "expected"),
    [
        (None, (), 0, None, False),
        (node_status(), (), 0, None, True),
        (node_status(ready=False), (), 0, None, False),
        (node_status(draining=True), (), 0, None, False),
        (node_status(), ("mpother0",), 1, None, False),
        (node_status(peers=("mpstranger",)), ("mpother0",), 1, None, False),
        (node_status(peers=("mpother0",)), ("mpother0",), 1, None, True),
        (node_status(peers=("mpanyone",)), (), 1, None, True),
        (node_status(peers=("mpother0",), policyVersion=3), ("mpother0",), 1, 4, False),
        (node_status(peers=("mpother0",), policyVersion=4), ("mpother0",), 1, 4, True),
        (node_status(), (), 0, 1, False),
    ],
)
def test_joined_gate(
    node_st: NodeStatus | None,
    fleet_ids: tuple[str, ...],
    others: int,
    policy: int | None,
    expected: bool,
) -> None:
    got = status.joined(
        node_st,
        fleet_peer_ids=frozenset(fleet_ids),
        has_other_members=others > 0,
        current_policy_version=policy,
    )
    assert got is expected


# --- status -------------------------------------------------------------------------------


def view(**status_fields: Any) -> Any:
    d = desired()
    p = pod.pod(d.ref, d.pod_inputs)
    p["status"] = pod_status(**status_fields)
    return pod_view(p)


HASH = pod.template_hash(desired().pod_inputs)


@pytest.mark.parametrize(
    ("inputs", "phase", "ready", "degraded", "progressing"),
    [
        (status.StatusInputs(1, None, HASH), Phase.PENDING, "False", "False", "True"),
        (status.StatusInputs(1, view(), HASH), Phase.READY, "True", "False", "False"),
        (
            status.StatusInputs(1, view(ready=False, joined=False), HASH),
            Phase.STARTING,
            "False",
            "False",
            "True",
        ),
        (
            status.StatusInputs(1, view(ready=False, waiting="CrashLoopBackOff", restarts=5), HASH),
            Phase.DEGRADED,
            "False",
            "True",
            "False",
        ),
        (
            status.StatusInputs(1, view(ready=False, containers_ready=False, restarts=4), HASH),
            Phase.DEGRADED,
            "False",
            "True",
            "False",
        ),
        (
            status.StatusInputs(
                1, view(ready=False, joined=False, waiting="ContainerCreating"), HASH
            ),
            Phase.STARTING,
            "False",
            "False",
            "True",
        ),
        (
            status.StatusInputs(1, view(ready=False, waiting="ImagePullBackOff"), HASH),
            Phase.DEGRADED,
            "False",
            "True",
            "False",
        ),
        (
            status.StatusInputs(1, view(), HASH, replacing="PodTemplateChanged"),
            Phase.REPLACING,
            "True",
            "False",
            "True",
        ),
        (status.StatusInputs(1, view(), HASH, paused=True), Phase.PAUSED, "True", "False", "False"),
        (
            status.StatusInputs(1, view(), HASH, deleting=True),
            Phase.TERMINATING,
            "False",
            "False",
            "True",
        ),
        (
            status.StatusInputs(1, view(), HASH, conflicts=("Service/n1",)),
            Phase.DEGRADED,
            "False",
            "True",
            "False",
        ),
    ],
)
def test_status_phase_and_conditions(
    inputs: status.StatusInputs, phase: Phase, ready: str, degraded: str, progressing: str
) -> None:
    out = status.build_status(MarketplaceNodeStatus(), inputs, now=NOW)
    assert out.phase == phase

    def st(t: ConditionType) -> str:
        c = find_condition(out.conditions, t)
        assert c is not None
        assert c.observed_generation == 1
        return c.status.value

    assert (st(ConditionType.READY), st(ConditionType.DEGRADED)) == (ready, degraded)
    assert st(ConditionType.PROGRESSING) == progressing


def test_status_carries_the_under_replicated_packages_the_node_reports() -> None:
    reported = NodeStatus(peer_id="p", under_replicated=4)
    first = status.build_status(
        MarketplaceNodeStatus(), status.StatusInputs(1, view(), HASH, node=reported), now=NOW
    )
    assert first.under_replicated == 4
    unreachable = status.build_status(first, status.StatusInputs(1, view(), HASH), now=NOW)
    assert unreachable.under_replicated == 4  # the last word stands while it does not answer


@pytest.mark.parametrize(
    ("reported", "reason"),
    [
        (NodeStatus(peer_id="p", storage_full=True), "StorageFull"),
        (NodeStatus(peer_id="p", clock_offset_seconds=-600), "ClockSkewed"),
    ],
)
def test_a_node_reporting_its_own_machine_wrong_is_degraded_and_still_ready(
    reported: NodeStatus, reason: str
) -> None:
    got = status.build_status(
        MarketplaceNodeStatus(), status.StatusInputs(1, view(), HASH, node=reported), now=NOW
    )
    conditions = {c.type: c for c in got.conditions}
    assert got.phase is Phase.DEGRADED  # a Warning Event and the Degraded gauge follow
    assert (
        conditions[ConditionType.DEGRADED].status,
        conditions[ConditionType.DEGRADED].reason,
    ) == (
        "True",
        reason,
    )
    assert conditions[ConditionType.READY].status == "True"  # it serves reads: not unready
    healed = status.build_status(
        got, status.StatusInputs(1, view(), HASH, node=NodeStatus(peer_id="p")), now=NOW
    )
    assert healed.phase is Phase.READY
    paused = status.build_status(
        got, status.StatusInputs(1, view(), HASH, node=reported, paused=True), now=NOW
    )
    assert paused.phase is Phase.PAUSED
    # A rollout step under way does not hide it (the chaos suite's full volume did).
    rolling = status.build_status(
        got, status.StatusInputs(1, view(), HASH, node=reported, replacing="Rollout"), now=NOW
    )
    assert rolling.phase is Phase.DEGRADED
    progressing = find_condition(rolling.conditions, ConditionType.PROGRESSING)
    assert progressing is not None
    assert (progressing.status, progressing.reason) == ("True", "Rollout")


def test_a_node_that_served_and_stopped_is_degraded_not_starting() -> None:
    """A SIGSTOPped (or partitioned) node's probe fails on the pod that served: not a start."""
    serving = status.build_status(
        MarketplaceNodeStatus(), status.StatusInputs(1, view(), HASH), now=NOW
    )
    hung = status.StatusInputs(1, view(ready=False, containers_ready=False), HASH)
    stopped = status.build_status(serving, hung, now=NOW)
    assert stopped.phase is Phase.DEGRADED
    degraded = find_condition(stopped.conditions, ConditionType.DEGRADED)
    assert degraded is not None
    assert (degraded.status, degraded.reason) == ("True", "NodeNotServing")
    assert status.build_status(stopped, hung, now=NOW).phase is Phase.DEGRADED  # stays
    assert status.build_status(stopped, status.StatusInputs(1, view(), HASH), now=NOW).phase is (
        Phase.READY
    )
    fresh = status.build_status(MarketplaceNodeStatus(), hung, now=NOW)  # never served: a start
    assert fresh.phase is Phase.STARTING
    replacing = status.StatusInputs(
        1, view(ready=False, containers_ready=False), HASH, replacing="RolloutStep"
    )
    assert status.build_status(serving, replacing, now=NOW).phase is Phase.REPLACING


def test_a_pod_whose_node_is_not_ready_is_degraded_even_while_replaced() -> None:
    """A killed kubelet: the node lifecycle controller marks the pod not Ready, and the
    rollout may be replacing it (its deletion cannot finish without a kubelet). The status
    says what is true: the Node is NotReady, the pod's state unknown."""
    serving = status.build_status(
        MarketplaceNodeStatus(), status.StatusInputs(1, view(), HASH), now=NOW
    )
    word = "the pod's Node n2 is not Ready (NodeStatusUnknown)"
    for replacing in (None, "RolloutStep"):
        inputs = status.StatusInputs(
            1, view(ready=False), HASH, node=NodeStatus(peer_id="p"), replacing=replacing,
            node_unready=word,
        )  # fmt: skip
        got = status.build_status(serving, inputs, now=NOW)
        conditions = {c.type: c for c in got.conditions}
        assert (got.phase, got.message) == (Phase.DEGRADED, word)
        assert (conditions[ConditionType.READY].status, conditions[ConditionType.READY].reason) == (
            "False", "NodeNotReady",
        )  # fmt: skip
        degraded = conditions[ConditionType.DEGRADED]
        assert (degraded.status, degraded.reason) == ("True", "NodeNotReady")
        progressing = conditions[ConditionType.PROGRESSING]
        assert progressing.status == ("True" if replacing else "False")
    back = status.build_status(got, status.StatusInputs(1, view(), HASH), now=NOW)
    assert back.phase is Phase.READY


def test_status_counts_every_peer_when_the_node_lists_only_some() -> None:
    """Issue 15: the poll asks for a few peers (`?peers=`); the node counts all."""
    listed = [PeerInfo(peer_id=f"mp{i:010d}", address=f"http://10.0.0.{i}:7070") for i in (3, 1)]
    some = NodeStatus(peer_id="p", peers=listed, peer_count=999)
    out = status.build_status(
        MarketplaceNodeStatus(), status.StatusInputs(1, view(), HASH, node=some), now=NOW
    )
    assert out.peers == 999
    assert out.connected_peers == ["mp0000000001", "mp0000000003"]
    every = NodeStatus(peer_id="p", peers=listed)  # a node that predates `peerCount`
    old = status.build_status(
        MarketplaceNodeStatus(), status.StatusInputs(1, view(), HASH, node=every), now=NOW
    )
    assert old.peers == 2


def test_transition_time_moves_only_when_status_flips() -> None:
    first = status.build_status(
        MarketplaceNodeStatus(), status.StatusInputs(1, view(), HASH), now=NOW
    )
    later = NOW + timedelta(minutes=5)
    same = status.build_status(first, status.StatusInputs(2, view(), HASH), now=later)
    assert same.conditions == [
        c.model_copy(update={"observed_generation": 2}) for c in first.conditions
    ]
    flipped = status.build_status(
        first, status.StatusInputs(2, view(ready=False, joined=False), HASH), now=later
    )
    ready = find_condition(flipped.conditions, ConditionType.READY)
    assert ready is not None
    assert ready.status is ConditionStatus.FALSE
    assert ready.last_transition_time == "2026-01-01T00:05:00Z"


def test_status_carries_node_report_and_caps_the_peer_list() -> None:
    peers = tuple(f"mppeer{i:04d}" for i in range(50))
    report = node_status(peers=peers, policyVersion=7, policyHash="h")
    out = status.build_status(
        MarketplaceNodeStatus(),
        status.StatusInputs(3, view(), HASH, node=report, current_policy_version=7),
        now=NOW,
    )
    assert out.peers == 50
    assert len(out.connected_peers) == 32
    assert out.peer_id == "mpself00"
    assert out.pod_ip == "127.1.0.5"
    assert out.policy_version == 7
    assert out.observed_generation == 3
    applied = find_condition(out.conditions, ConditionType.POLICY_APPLIED)
    assert applied is not None
    assert applied.status is ConditionStatus.TRUE
    behind = status.build_status(
        out, status.StatusInputs(3, view(), HASH, node=report, current_policy_version=8), now=NOW
    )
    lagging = find_condition(behind.conditions, ConditionType.POLICY_APPLIED)
    assert lagging is not None
    assert lagging.reason == "Behind"


@pytest.mark.parametrize(
    ("statuses", "started"),
    [
        (None, False),  # no container status yet: nothing runs
        ([], False),
        ([{"name": "node", "started": False}], False),  # running, startup probe pending
        ([{"name": "node"}], False),
        ([{"name": "node", "started": True}], True),
        ([{"name": "node", "started": True}, {"name": "side", "started": False}], False),
    ],
)
def test_pod_view_started_means_every_container_passed_its_startup_probe(
    statuses: list[dict[str, Any]] | None, started: bool
) -> None:
    d = desired()
    p = pod.pod(d.ref, d.pod_inputs)
    p["status"] = {"phase": "Running", "podIP": "127.1.0.5", "containerStatuses": statuses}
    assert pod_view(p).started is started


def test_the_admin_api_is_reached_on_the_private_port_or_on_p2p_for_a_one_port_pod() -> None:
    d = desired()
    p = pod.pod(d.ref, d.pod_inputs)
    assert pod_view(p).admin_port(7070) == 9070
    del p["metadata"]["annotations"]["marketplace.p2p.dev/private-port"]  # made before the split
    assert pod_view(p).admin_port(7070) == 7070


def test_a_node_refusing_the_admin_token_is_reported_as_that_not_as_not_joined() -> None:
    inputs = status.StatusInputs(
        1, view(ready=False, joined=False), HASH, token_rejected="status: unauthenticated"
    )
    out = status.build_status(MarketplaceNodeStatus(), inputs, now=NOW)
    assert out.phase == Phase.DEGRADED
    ready = find_condition(out.conditions, ConditionType.READY)
    degraded = find_condition(out.conditions, ConditionType.DEGRADED)
    assert ready is not None
    assert degraded is not None
    assert (ready.status, ready.reason) == (ConditionStatus.FALSE, "AdminTokenRejected")
    assert (degraded.status, degraded.reason) == (ConditionStatus.TRUE, "AdminTokenRejected")
    assert "admin token" in (out.message or "")


@pytest.mark.parametrize(
    ("applied", "current", "expected"),
    [(None, None, False), (1, None, True), (None, 1, False), (1, 1, True), (1, 2, False)],
)
def test_with_fleet_policy_run_here_a_node_without_policy_is_not_joined(
    applied: int | None, current: int | None, expected: bool
) -> None:
    """Issue #19 defect 2: Ready never comes before PolicyApplied, even while the fleet
    ConfigMap names no version yet (a fleet just created, or recreated)."""
    got = status.joined(
        node_status(policyVersion=applied),
        fleet_peer_ids=frozenset(),
        has_other_members=False,
        current_policy_version=current,
        policy_required=True,
    )
    assert got is expected


def _claim(storage_class: str | None, size: str = "1Gi") -> dict[str, Any]:
    claim_spec: dict[str, Any] = {"resources": {"requests": {"storage": size}}}
    if storage_class is not None:
        claim_spec["storageClassName"] = storage_class
    return {"metadata": {"name": "n1-data"}, "spec": claim_spec}


@pytest.mark.parametrize(
    ("storage", "claim", "resizing", "mismatch"),
    [
        ({}, _claim("standard"), False, None),  # no class asked for: the default is fine
        ({"storageClassName": "fast"}, _claim("fast"), False, None),
        ({"storageClassName": "fast"}, _claim("standard"), False, "StorageClass standard"),
        ({"storageClassName": "fast"}, _claim(None), False, "StorageClass (none)"),
        ({"size": "2Gi"}, _claim(None), False, "requests 1Gi, the spec asks for 2Gi"),
        ({"size": "2Gi"}, _claim(None), True, None),  # the resize was asked for just now
    ],
)
def test_volume_mismatch(
    storage: dict[str, Any], claim: dict[str, Any], resizing: bool, mismatch: str | None
) -> None:
    """Issue #19 defect 6: the claim's class or size differing from the spec is found."""
    got = node.volume_mismatch(spec(storage=storage), claim, resizing)
    if mismatch is None:
        assert got is None
    else:
        assert got is not None
        assert mismatch in got


@pytest.mark.parametrize(
    ("inputs", "reason"),
    [
        (status.StatusInputs(1, None, HASH, rejected=("pod Pod is invalid: foo",)), "SpecRejected"),
        (status.StatusInputs(1, view(), HASH, volume_mismatch="class differs"), "VolumeMismatch"),
    ],
)
def test_what_the_spec_cannot_get_is_degraded_never_ready(
    inputs: status.StatusInputs, reason: str
) -> None:
    """Issue #19 defects 5 and 6: Degraded=True with the reason and message, not Ready."""
    out = status.build_status(MarketplaceNodeStatus(), inputs, now=NOW)
    assert out.phase == Phase.DEGRADED
    ready = find_condition(out.conditions, ConditionType.READY)
    degraded = find_condition(out.conditions, ConditionType.DEGRADED)
    assert ready is not None
    assert degraded is not None
    assert (ready.status, ready.reason) == (ConditionStatus.FALSE, reason)
    assert (degraded.status, degraded.reason) == (ConditionStatus.TRUE, reason)
    detail = "Pod is invalid: foo" if inputs.rejected else "class differs"
    assert detail in (out.message or "")


def test_a_replaced_identity_secret_is_reported_until_the_node_restarts() -> None:
    """Design edge of issue #19: deleting `<node>-identity` makes a new key; the running
    pod keeps its old peer id, and the status says so instead of staying silently Ready."""
    inputs = status.StatusInputs(1, view(), HASH, node=node_status(), peer_id="mpnewkey0000")
    out = status.build_status(MarketplaceNodeStatus(), inputs, now=NOW)
    assert out.phase == Phase.DEGRADED
    degraded = find_condition(out.conditions, ConditionType.DEGRADED)
    assert degraded is not None
    assert degraded.reason == "IdentityChanged"
    same = status.StatusInputs(1, view(), HASH, node=node_status(), peer_id="mpself00")
    assert status.build_status(MarketplaceNodeStatus(), same, now=NOW).phase == Phase.READY


def test_a_relocated_nodes_old_claim_is_waited_out_before_anything_is_made() -> None:
    d = desired()
    old = existing(d)
    assert old.pvc is not None
    meta = {**old.pvc["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}
    going = {**old.pvc, "metadata": meta}
    actions = node.plan(d, node.Observed(**{**old.__dict__, "pod": None, "pvc": going}), now=NOW)
    assert node.WaitForVolume("n1-data") in actions
    made = [a.kind for a in actions if isinstance(a, node.Create)]
    assert node.Kind.PVC not in made
    assert node.Kind.POD not in made
