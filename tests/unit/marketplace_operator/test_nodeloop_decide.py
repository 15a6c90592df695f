"""`nodeloop.decide`: one pass's gate, status and Event from what was observed, no I/O."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from marketplace_operator import nodeloop
from marketplace_operator.model.mnode import MarketplaceNodeSpec, Phase
from marketplace_operator.reconcile import fleet, gate
from marketplace_operator.reconcile import node as plan
from marketplace_operator.reconcile.observe import pod_view
from marketplace_operator.render import names, pod
from marketplace_protocol.admin import NodeStatus, PeerInfo

REF = names.NodeRef(name="n1", namespace="ns", uid="uid-1", fleet="blue")
WALL = datetime(2026, 1, 1, tzinfo=UTC)
TOLERANCE = gate.Tolerance(failures=3, silence=15)


def desired() -> plan.Desired:
    spec = MarketplaceNodeSpec.model_validate({"fleet": "blue"})
    return plan.Desired(ref=REF, spec=spec, pod_inputs=pod.PodInputs("img", spec))


def running_pod(*, joined: bool) -> dict[str, Any]:
    d = desired()
    body = pod.pod(d.ref, d.pod_inputs)
    body["metadata"]["uid"] = "pod-1"
    flag = "True" if joined else "False"
    body["status"] = {
        "phase": "Running",
        "podIP": "127.1.0.5",
        "conditions": [
            {"type": "Ready", "status": flag},
            {"type": "ContainersReady", "status": "True"},
            {"type": names.JOINED_CONDITION, "status": flag},
        ],
        "containerStatuses": [
            {"name": "node", "restartCount": 0, "started": True, "state": {"running": {}}}
        ],
    }
    return body


BODY = {"metadata": {"name": "n1", "namespace": "ns", "uid": "uid-1", "generation": 1}}


def decide(pod_body: dict[str, Any], poll: nodeloop.Poll, **kw: Any) -> nodeloop.Decision:
    args: dict[str, Any] = {
        "memory": None,
        "since_last_write": None,
        "now": 100.0,
        "wall": WALL,
        "tolerance": TOLERANCE,
        "policy_required": True,
    }
    args.update(kw)
    views = args.pop("views", None) or nodeloop.Views(pod=pod_body)
    return nodeloop.decide(BODY, views, desired(), poll, nodeloop.Findings(), **args)


def test_a_node_that_answers_with_its_policy_gets_its_gate_and_is_ready_now() -> None:
    got = decide(
        running_pod(joined=False),
        nodeloop.Poll(NodeStatus(peer_id="p", ready=True, policy_version=1)),
    )
    assert got.set_gate is True
    assert got.delay == 0.0
    assert got.patch["phase"] == "Starting"  # the pod's gate shows on the next pass
    assert got.memory is not None
    assert got.memory.failures == 0


def test_a_node_without_a_policy_does_not_get_its_gate() -> None:
    got = decide(running_pod(joined=False), nodeloop.Poll(NodeStatus(peer_id="p", ready=True)))
    assert got.set_gate is None


def test_one_failed_poll_of_a_joined_node_keeps_its_gate_and_remembers_it() -> None:
    got = decide(running_pod(joined=True), nodeloop.Poll())
    assert got.set_gate is None
    assert got.memory is not None
    assert got.memory.failures == 1
    assert got.status.phase is Phase.READY


def test_a_rejected_token_is_a_warning_event_and_degraded() -> None:
    got = decide(running_pod(joined=False), nodeloop.Poll(rejected="status: unauthenticated"))
    assert got.status.phase is Phase.DEGRADED
    assert got.event is not None
    assert got.event[0] is True
    assert "admin token" in got.event[1]


def test_peer_count_changes_alone_are_paced() -> None:
    ready = decide(
        running_pod(joined=True),
        nodeloop.Poll(NodeStatus(peer_id="p", ready=True, policy_version=1)),
    )
    body = {**BODY, "status": ready.patch}
    got = nodeloop.decide(
        body,
        nodeloop.Views(pod=running_pod(joined=True)),
        desired(),
        nodeloop.Poll(NodeStatus(peer_id="p", ready=True, policy_version=1, peers=[])),
        nodeloop.Findings(),
        memory=ready.memory,
        since_last_write=1.0,
        now=101.0,
        wall=WALL,
        tolerance=TOLERANCE,
        policy_required=True,
    )
    assert got.patch == {}
    assert got.delay is None
    assert got.event is None


def decide_connected(views: nodeloop.Views, *, to: str) -> nodeloop.Decision:
    """One pass of a node with its policy that is connected to the peer `to`."""
    peer = PeerInfo(peer_id=to, address="http://127.1.0.7:7070")
    node = NodeStatus(peer_id="p", ready=True, policy_version=1, peers=[peer])
    return decide(views.pod or {}, nodeloop.Poll(node), views=views)


class CountedFleet(tuple[fleet.MemberPod, ...]):
    """A fleet that counts the members a pass reads (`read`)."""

    read = 0

    def __iter__(self) -> Iterator[fleet.MemberPod]:
        for member in super().__iter__():
            type(self).read += 1
            yield member


class CountedIds(dict[str, str]):
    """Peer ids by member that count how many a pass reads."""

    read = 0

    def items(self) -> Any:
        type(self).read += len(self)
        return super().items()

    def values(self) -> Any:
        type(self).read += len(self)
        return super().values()

    def __iter__(self) -> Iterator[str]:
        type(self).read += len(self)
        return super().__iter__()


def test_a_pass_reads_a_few_members_not_the_whole_fleet() -> None:
    """Issue 15: each pass of every node counted the fleet's members and listed their peer
    ids (Python loops over N), a tenth of the operator's CPU while 1,000 nodes started.
    The gate needs only whether another member has an address and the others' ids as a
    set (built once per pass by `gather`)."""
    member = pod_view(running_pod(joined=True))
    members = CountedFleet(
        fleet.MemberPod(node=f"m{i}", pod=member, port=7070) for i in range(1_000)
    )
    ids = CountedIds({f"m{i}": f"mp{i}" for i in range(1_000)})
    views = nodeloop.Views(
        pod=running_pod(joined=False),
        fleet=members,
        peer_ids=ids,
        other_peer_ids=frozenset(ids.values()),
    )
    CountedFleet.read = CountedIds.read = 0
    got = decide_connected(views, to="mp7")
    assert got.set_gate is True  # connected to a member by its peer id
    assert CountedFleet.read <= 2
    assert CountedIds.read == 0


def test_a_node_connected_only_to_strangers_is_not_joined() -> None:
    member = pod_view(running_pod(joined=True))
    views = nodeloop.Views(
        pod=running_pod(joined=False),
        fleet=(fleet.MemberPod(node="m1", pod=member, port=7070),),
        peer_ids={"m1": "mp1"},
        other_peer_ids=frozenset({"mp1"}),
    )
    got = decide_connected(views, to="mpx")
    assert got.set_gate is None
