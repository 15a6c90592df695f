"""`nodeloop.decide`: one pass's gate, status and Event from what was observed, no I/O."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from marketplace_operator import errors, events, k8s, nodeloop
from marketplace_operator.context import (
    REUSED_ANSWER_SECONDS,
    Answer,
    Context,
    Wakeups,
)
from marketplace_operator.handlers.policy import IndexInputs
from marketplace_operator.metrics import Metrics
from marketplace_operator.model.mnode import MarketplaceNodeSpec, Phase
from marketplace_operator.policy.ports import FleetKey
from marketplace_operator.policy.propagate import NodeTarget
from marketplace_operator.reconcile import fleet, gate
from marketplace_operator.reconcile import node as plan
from marketplace_operator.reconcile.observe import PodView, pod_view
from marketplace_operator.render import names, pod
from marketplace_operator.settings import Settings
from marketplace_protocol.admin import NodeStatus, PeerInfo
from prometheus_client import CollectorRegistry

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


async def test_a_pass_gives_the_gate_the_silence_stretched_with_the_poll_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With 200 node loops at 10 polls a second, a node is polled every 20 s: 3 missed
    polls are 60 s of silence, not the 15 s configured for a small fleet."""
    ctx = Context(
        settings=Settings(
            poll_interval_seconds=5, polls_per_second=10, gate_poll_failures=3,
            gate_silence_seconds=15,
        ),
        kube=cast("Any", None), nodes=cast("Any", None),
        metrics=Metrics(CollectorRegistry(), phases=dict), tokens=cast("Any", None),
    )  # fmt: skip
    for i in range(200):
        ctx.wakeups.register(("ns", f"n{i}"))
    given: list[gate.Tolerance] = []
    real = nodeloop.decide

    def deciding(*args: Any, tolerance: gate.Tolerance, **kw: Any) -> nodeloop.Decision:
        given.append(tolerance)
        return real(*args, tolerance=tolerance, **kw)

    async def nothing(*_: Any, **__: Any) -> Any:
        return None

    async def answered(*_: Any) -> nodeloop.Poll:
        return nodeloop.Poll(node=NodeStatus(peer_id="peer-self-1", ready=True))

    monkeypatch.setattr(nodeloop, "decide", deciding)
    monkeypatch.setattr(nodeloop, "_token_or_none", nothing)
    monkeypatch.setattr(nodeloop, "_poll_node", answered)
    monkeypatch.setattr(nodeloop, "_sync_members", nothing)
    monkeypatch.setattr(nodeloop, "_write", nothing)
    views = nodeloop.Views(pod=running_pod(joined=True))
    await nodeloop.report_status(ctx, BODY, views, desired())
    assert given == [gate.Tolerance(failures=3, silence=60.0)]


async def test_a_poll_tells_the_policy_worker_the_nodes_applied_version() -> None:
    """The policy worker's one source of applied versions (its own sweep is gone): the
    target must be the one its rounds push to, or `heard` would track a node never pushed."""
    heard: list[tuple[str, str, NodeTarget, NodeStatus]] = []

    class Answering:
        async def status(self, base: str, token: str, *, peers: int) -> NodeStatus:
            return NodeStatus(peer_id="peer-self-1", policy_version=7, local_bans=0)

    ctx = Context(
        settings=Settings(), kube=cast("Any", None), nodes=cast("Any", Answering()),
        metrics=Metrics(CollectorRegistry(), phases=dict), tokens=cast("Any", None),
        policy_heard=lambda *args: heard.append(args),
    )  # fmt: skip
    view = pod_view(running_pod(joined=True))
    poll = await nodeloop._poll_node(ctx, REF, view, 7070, "t0ken")
    assert poll.node is not None
    assert poll.node.policy_version == 7
    # The same node as the worker's inputs list it from the pod index.
    pods = {fleet.members_key("ns", "blue"): [fleet.MemberPod(node="n1", pod=view, port=7070)]}
    no: Any = {}
    inputs = IndexInputs(no, no, cast("Any", pods), no, no)
    assert heard == [("ns", "blue", *inputs.nodes(FleetKey("ns", "blue")), poll.node)]
    await nodeloop._poll_node(ctx, REF, view, 7070, None)  # no token: no poll, nothing heard
    assert len(heard) == 1


async def test_passes_asking_for_a_node_meanwhile_share_one_read() -> None:
    """The passes of many unserving pods ask for the same Kubernetes Node at once: one GET,
    and a failed one is not kept (the next pass asks again)."""
    gets: list[str] = []
    release = asyncio.Event()
    failing = True

    class Kube:
        async def get(self, kind: Any, namespace: str, name: str) -> dict[str, Any]:
            gets.append(name)
            await release.wait()
            if failing:
                raise errors.Unavailable("the API server is restarting")
            return {"metadata": {"name": name}, "status": {"conditions": []}}

    ctx = Context(
        settings=Settings(), kube=cast("Any", Kube()), nodes=cast("Any", None),
        metrics=Metrics(CollectorRegistry(), phases=dict), tokens=cast("Any", None),
    )  # fmt: skip
    asking = [asyncio.create_task(nodeloop._kube_node(ctx, "n-a")) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*asking, return_exceptions=True)
    assert gets == ["n-a"]
    assert all(isinstance(r, errors.Unavailable) for r in results)
    failing = False
    health = await asyncio.gather(*(nodeloop._kube_node(ctx, "n-a") for _ in range(5)))
    assert gets == ["n-a", "n-a"]
    assert {h.name for h in health} == {"n-a"}


# --- a pass woken by its pod's events uses the node's answer of a moment ago (issue 15) --

NODE = NodeStatus(peer_id="peer-self-1", ready=True)


def started(uid: str = "pod-1", **status: Any) -> PodView:
    body = running_pod(joined=True)
    body["metadata"]["uid"] = uid
    body["status"] |= status
    return pod_view(body)


RESTARTED = [{"name": "node", "restartCount": 1, "started": False, "state": {"waiting": {}}}]
# Restarted, and started again: a new process, which has forgotten what it was told.
SERVING_AGAIN = [
    {"name": "node", "restartCount": 1, "started": True, "ready": True, "state": {"running": {}}}
]


@pytest.mark.parametrize(
    ("answer", "view", "expected"),
    [
        (None, started(), False),  # never answered
        (Answer("pod-1", 9.5, NODE), started(), True),
        (Answer("pod-1", 9.0, NODE), started(), True),  # exactly `within` old
        (Answer("pod-1", 8.9, NODE), started(), False),  # older
        (Answer("pod-0", 9.9, NODE), started(), False),  # another (an earlier) pod's
        (Answer("pod-1", 9.9, NODE), None, False),  # no pod now
        (Answer("pod-1", 9.9, NODE), started(containerStatuses=RESTARTED), False),
        (Answer("pod-1", 9.9, NODE), started(containerStatuses=SERVING_AGAIN), False),
        (Answer("pod-1", 9.9, NODE, restarts=1), started(containerStatuses=SERVING_AGAIN), True),
        (Answer("pod-1", 9.9, NODE), started(phase="Failed"), False),
        # given under the fleet's earlier policy: it says the node is behind, reused the
        # gate would go off
        (Answer("pod-1", 9.9, NODE, policy=6), started(), False),
        (Answer("pod-1", 9.9, NODE, policy=7), started(), True),
    ],
)
def test_only_this_running_pods_recent_answer_is_reusable(
    answer: Answer | None, view: PodView | None, expected: bool
) -> None:
    policy = 7 if answer is not None and answer.policy is not None else None
    assert nodeloop.reusable(answer, view, 10.0, within=1.0, policy=policy) is expected


class Node:
    """The node's admin API: answers, or fails while `down`."""

    def __init__(self) -> None:
        self.asked = 0
        self.down = False

    async def status(self, base: str, token: str, *, peers: int) -> NodeStatus:
        self.asked += 1
        if self.down:
            raise errors.NodeUnreachable("connection refused")
        return NODE


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> Node:
    async def nothing(*_: Any, **__: Any) -> Any:
        return None

    async def token(*_: Any) -> str:
        return "t0ken"

    monkeypatch.setattr(nodeloop, "_token_or_none", token)
    monkeypatch.setattr(nodeloop, "_sync_members", nothing)
    monkeypatch.setattr(nodeloop, "_write", nothing)
    return Node()


def answering(node: Node) -> Context:
    return Context(
        settings=Settings(),
        kube=cast("Any", None),
        nodes=cast("Any", node),
        metrics=Metrics(CollectorRegistry(), phases=dict),
        tokens=cast("Any", None),
    )


async def report(
    ctx: Context,
    *,
    reuse_within: float,
    pod: dict[str, Any] | None = None,
    policy: int | None = None,
) -> nodeloop.Outcome:
    views = nodeloop.Views(pod=pod or running_pod(joined=True), current_policy_version=policy)
    return await nodeloop.report_status(ctx, BODY, views, desired(), reuse_within=reuse_within)


async def test_a_woken_pass_reuses_an_answer_and_a_clock_pass_asks(node: Node) -> None:
    ctx = answering(node)
    assert (await report(ctx, reuse_within=1.0)).poll == "asked"  # nothing to reuse yet
    assert node.asked == 1
    # woken a moment later: the same answer serves
    assert (await report(ctx, reuse_within=1.0)).poll == "reused"
    assert node.asked == 1
    assert (await report(ctx, reuse_within=0.0)).poll == "asked"  # the clock's pass: asks
    assert node.asked == 2


async def test_after_a_policy_change_a_woken_pass_asks_again(node: Node) -> None:
    """The answer of before the change says the node is behind: reused, its gate would go
    off although the node has the new policy by now."""
    ctx = answering(node)
    await report(ctx, reuse_within=5.0, policy=1)
    assert (await report(ctx, reuse_within=5.0, policy=1)).poll == "reused"
    assert (await report(ctx, reuse_within=5.0, policy=2)).poll == "asked"
    assert (await report(ctx, reuse_within=5.0, policy=2)).poll == "reused"
    assert node.asked == 2


async def test_a_pod_not_started_is_not_asked_and_the_pass_says_so(node: Node) -> None:
    starting = running_pod(joined=False)
    starting["status"]["containerStatuses"][0]["started"] = False
    assert (await report(answering(node), reuse_within=0.0, pod=starting)).poll == "skipped"
    assert node.asked == 0


@pytest.mark.parametrize(
    ("trigger", "held", "within"),
    [
        ("event", None, 50.0),  # the pod's news: the node's answer of its routine interval
        ("write", 0.4, 0.4 + REUSED_ANSWER_SECONDS),  # the answer it was decided on
        ("join", None, 0.0),  # the clock's passes ask: the node's own news, its silence
        ("resync", 0.4, 0.0),
        ("start", None, 0.0),
    ],
)
def test_how_old_an_answer_each_kind_of_pass_may_use(
    trigger: str, held: float | None, within: float
) -> None:
    assert nodeloop.reuse_for(trigger, held, 50.0) == pytest.approx(within)


async def test_a_failed_poll_is_never_reused(node: Node) -> None:
    """The gate's hysteresis counts unanswered polls: each must be a poll of its own."""
    ctx = answering(node)
    await report(ctx, reuse_within=0.0)
    ctx.answers.drop((REF.namespace, REF.name))  # e.g. a new pod, not answered yet
    node.down = True
    await report(ctx, reuse_within=1.0)
    await report(ctx, reuse_within=1.0)
    assert node.asked == 3


async def test_an_unanswered_poll_ends_the_reuse_of_the_last_answer(node: Node) -> None:
    """A hung node's readiness flips wake event passes: reusing its last answer, they told
    the gate it answered, and the gate never counted the silence."""
    ctx = answering(node)
    await report(ctx, reuse_within=0.0)  # answered
    node.down = True
    await report(ctx, reuse_within=0.0)  # the clock's pass: unanswered
    assert (await report(ctx, reuse_within=60.0)).poll == "asked"  # nothing left to reuse
    assert node.asked == 3


async def test_the_answer_of_an_earlier_pod_is_not_its_successors(node: Node) -> None:
    ctx = answering(node)
    view = pod_view(running_pod(joined=True))
    now = time.monotonic()
    ctx.answers.put((REF.namespace, REF.name), Answer("an-earlier-pod", now, NODE))
    assert view.uid != "an-earlier-pod"
    await report(ctx, reuse_within=1.0)
    assert node.asked == 1


async def test_a_pause_says_whether_a_wakeup_ended_it() -> None:
    wake = asyncio.Event()
    assert await Wakeups.sleep(wake, 0.01, debounce=0.0) is False
    wake.set()
    assert await Wakeups.sleep(wake, 5.0, debounce=0.0) is True
    assert not wake.is_set()


async def test_a_write_not_yet_seen_in_the_body_is_not_written_or_announced_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The node's live body shows a status write only when its watch event arrives (seconds
    later on a busy API server): a pass in between decides from what was written."""
    patches: list[dict[str, Any]] = []
    gates: list[dict[str, Any]] = []
    announced: list[str] = []

    class Kube:
        async def patch(self, res: Any, namespace: str, name: str, body: Any, **_: Any) -> Any:
            (patches if res is k8s.MNODES else gates).append(body["status"])
            return {}

    async def token(*_: Any) -> str:
        return "t0ken"

    async def nothing(*_: Any, **__: Any) -> None:
        return None

    monkeypatch.setattr(nodeloop, "_token_or_none", token)
    monkeypatch.setattr(nodeloop, "_sync_members", nothing)
    monkeypatch.setattr(events, "normal", lambda _b, _r, text: announced.append(text))
    ctx = Context(
        settings=Settings(), kube=cast("Any", Kube()), nodes=cast("Any", Node()),
        metrics=Metrics(CollectorRegistry(), phases=dict), tokens=cast("Any", None),
    )  # fmt: skip
    pod_body = running_pod(joined=False)
    pod_body["metadata"]["resourceVersion"] = "p1"
    views = nodeloop.Views(pod=pod_body)

    async def report_on(body: dict[str, Any]) -> None:
        await nodeloop.report_status(ctx, body, views, desired())

    stale = {"metadata": {**BODY["metadata"], "resourceVersion": "5"}}
    await report_on(stale)
    assert len(patches) == 1
    assert len(announced) == 1
    assert "phase" in patches[0]
    await report_on(stale)  # the write's watch event has not come: the body is as it was
    assert (len(patches), len(announced)) == (1, 1)
    state = ctx.node((REF.namespace, REF.name))
    assert state.written is not None
    state.written = (state.written[0], {**state.written[1], "message": "an earlier write"})
    state.status_written = None  # not paced: the message goes out at once
    await report_on(stale)  # a second write over the first, neither shown yet
    assert (len(patches), len(announced)) == (2, 1)
    assert state.written is not None
    assert state.written[1]["phase"] == patches[0]["phase"]  # both trusted
    assert state.written[1]["message"] == patches[0]["message"]
    await report_on(stale)
    assert (len(patches), len(announced)) == (2, 1)
    other = {"metadata": {**stale["metadata"], "resourceVersion": "6"}}
    await report_on(other)  # another event of the node came first (an annotation)
    assert (len(patches), len(announced)) == (2, 1)
    shown = {**patches[0], **patches[1]}
    echo = {"metadata": {**stale["metadata"], "resourceVersion": "7"}, "status": shown}
    await report_on(echo)  # it came: the body shows the writes
    assert (len(patches), len(announced)) == (2, 1)
    reset = {"metadata": {**stale["metadata"], "resourceVersion": "8"}, "status": {}}
    await report_on(reset)  # another writer emptied it: the body is the truth again
    assert len(patches) == 3
    assert gates == []  # not joined, and its gate was off: nothing to set


def test_a_gate_set_but_not_yet_in_the_pods_view_is_not_set_again() -> None:
    """Its gate on in the view (the pod's last event), off as this operator last set it: the
    pass decides from what it set (no second patch of the pod)."""
    pod_body = running_pod(joined=True)  # with no other member: the gate goes off
    view = pod_view(pod_body)
    assert decide(pod_body, nodeloop.Poll(node=NODE)).set_gate is False
    trusted = nodeloop.gate_written(("pod-1", 100.0, False), view, 101.0)
    assert trusted is False
    assert decide(pod_body, nodeloop.Poll(node=NODE), gate_set=trusted).set_gate is None
    # The view shows it, another pod, or too long ago: the view is the truth.
    assert nodeloop.gate_written(("pod-1", 100.0, True), view, 101.0) is None
    assert nodeloop.gate_written(("pod-0", 100.0, False), view, 101.0) is None
    late = 100.0 + nodeloop.OWN_WRITE_TRUSTED_SECONDS + 1
    assert nodeloop.gate_written(("pod-1", 100.0, False), view, late) is None
    assert nodeloop.gate_written(None, view, 101.0) is None


def test_a_status_write_is_trusted_until_the_body_shows_it_or_it_is_old() -> None:
    patch = {"phase": "Replacing", "message": None}
    before = {"phase": "Ready", "message": "serving", "peers": 3}
    assert nodeloop.written_status((100.0, patch), before, 101.0) == {
        "phase": "Replacing",
        "peers": 3,
    }
    shown = {"phase": "Replacing", "peers": 4}
    assert nodeloop.written_status((100.0, patch), shown, 101.0) is None
    late = 100.0 + nodeloop.OWN_WRITE_TRUSTED_SECONDS + 1
    assert nodeloop.written_status((100.0, patch), before, late) is None
    assert nodeloop.written_status(None, before, 101.0) is None
