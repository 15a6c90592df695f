"""The fleet rollout's I/O for one pass: a step's nodes are acted on and asked together.

With 64 nodes in a step (maxUnavailable at its cap), one call after the other was 64 to
128 round trips per pass on a loaded API server before the next pass could look.
Here each fake call waits until all of the step's calls are in flight: done one by
one, the first would wait for the others forever (the test's timeout says so).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from marketplace_operator import errors, events
from marketplace_operator.handlers import rollout
from marketplace_operator.model.tls import TlsSpec
from marketplace_operator.rollout import planner
from marketplace_operator.rollout.observation import Drain
from marketplace_protocol.admin import DrainState, DrainStatus

N = 8
TOGETHER = 2.0  # seconds the calls wait for each other


class Together:
    """A barrier for `n` calls; `fail` names calls that raise once all are in."""

    def __init__(self, n: int, fail: frozenset[str] = frozenset()) -> None:
        self.n, self.fail = n, fail
        self.calls: list[str] = []
        self.all_in = asyncio.Event()

    async def arrive(self, what: str) -> None:
        self.calls.append(what)
        if len(self.calls) == self.n:
            self.all_in.set()
        await asyncio.wait_for(self.all_in.wait(), TOGETHER)
        if what in self.fail:
            raise errors.Conflict(f"{what}: the pod changed", status=409)


def _pass(kube: Any = None, nodes: Any = None) -> rollout._Pass:
    names = [f"n{i}" for i in range(N)]
    mnodes = {n: {"metadata": {"name": n}, "spec": {}} for n in names}
    pods = {
        n: {"metadata": {"uid": f"uid-{n}"}, "status": {"podIP": f"127.0.9.{i}"}}
        for i, n in enumerate(names)
    }

    class Tokens:
        async def get(self, *_: Any) -> str:
            return "the-fleet-token"

    ctx = SimpleNamespace(
        kube=kube, nodes=nodes, tokens=Tokens(), wakeups=SimpleNamespace(wake=lambda _: None)
    )
    indexes: dict[str, Any] = {"mnode_secrets": {}}
    return rollout._Pass(ctx, "ns", "f", indexes, mnodes, pods)  # type: ignore[arg-type]


@pytest.mark.parametrize("failing", [frozenset(), frozenset({"n3"})])
async def test_a_steps_pod_deletions_go_out_together(failing: frozenset[str]) -> None:
    """All at once; every one is tried, and the first failure is raised after."""
    together = Together(N, fail=failing)

    class Kube:
        async def delete(self, _res: Any, _ns: str, name: str, **_: Any) -> bool:
            await together.arrive(name)
            return True

    seen = _pass(kube=Kube())
    actions = tuple(planner.DeletePod(f"n{i}", f"uid-n{i}", 5.0) for i in range(N))
    if failing:
        with pytest.raises(errors.Conflict, match="n3"):
            await rollout.act_all(seen, actions)
    else:
        await rollout.act_all(seen, actions)
    assert sorted(together.calls) == sorted(f"n{i}" for i in range(N))


async def test_drain_states_are_asked_together() -> None:
    together = Together(N)

    class Nodes:
        async def drain_status(self, base: str, _token: str) -> DrainStatus:
            await together.arrive(base)
            return DrainStatus.model_validate({"state": DrainState.DRAINED, "inFlight": 0})

    seen = _pass(nodes=Nodes())
    states = await seen.drain_states({f"n{i}" for i in range(N)})
    assert states == {f"n{i}": Drain.DRAINED for i in range(N)}


async def test_a_nodes_view_is_kept_until_what_it_is_made_of_changes() -> None:
    """A pass of a rolling 1,000-node fleet re-made every node's view four times a second;
    a view is now re-made only when its MarketplaceNode, pod, drain or route changed. The
    bodies are what the indexes hold (a slim MarketplaceNode has no resourceVersion)."""
    known: rollout.ViewCache = {}
    raw = {
        "metadata": {"name": "n0", "namespace": "ns", "uid": "m0", "resourceVersion": "1"},
        "spec": {"fleet": "f"},
    }

    async def indexed(body: dict[str, Any]) -> dict[str, Any]:
        index: Any = rollout.rollout_mnodes  # the kopf index function, called as kopf does
        entry = await index(body=body, namespace="ns")
        return dict(entry[("ns", "f")])

    pod: dict[str, Any] = {
        "metadata": {"name": "n0-node", "uid": "u1", "annotations": {}},
        "status": {"podIP": "127.0.9.1", "phase": "Running"},
    }
    ctx = SimpleNamespace(settings=SimpleNamespace(default_node_image="node:1"))
    indexes: dict[str, Any] = {"cert_manager_crds": ()}

    def seen(m: Any, p: Any) -> rollout._Pass:
        return rollout._Pass(ctx, "ns", "f", indexes, {"n0": m}, {"n0": p}, known)  # type: ignore[arg-type]

    tls = TlsSpec()
    mnode = await indexed(raw)
    first = seen(mnode, pod).node_view("n0", Drain.SERVING, tls=tls)
    assert seen(mnode, pod).node_view("n0", Drain.SERVING, tls=tls) is first
    assert seen(mnode, pod).node_view("n0", Drain.DRAINED, tls=tls) is not first
    changed = await indexed({**raw, "spec": {"fleet": "f", "image": "node:2"}})
    assert seen(changed, pod).node_view("n0", Drain.DRAINED, tls=tls).desired != first.desired
    ready = {
        **pod,
        "status": {**pod["status"], "conditions": [{"type": "Ready", "status": "True"}]},
    }
    again = seen(changed, ready).node_view("n0", Drain.DRAINED, tls=tls)
    assert again.pod is not None
    assert again.pod.ready
    rollout._Pass.gather(ctx, "ns", "f", {**indexes, "rollout_mnodes": {}}, known)  # type: ignore[arg-type]
    assert known == {}  # the node left the fleet: its view goes


def test_a_steps_own_progress_is_an_event_on_its_node_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Steps starting and failing are the fleet's Events (and the node's); a step's own
    progress (drained, replaced) is its node's alone, or the fleet's once the node is gone."""
    posted: list[tuple[str, str]] = []
    monkeypatch.setattr(
        events, "post", lambda target, **kw: posted.append((target["kind"], kw["reason"]))
    )
    fleet = {"kind": "MarketplaceFleet", "metadata": {"name": "blue", "namespace": "ns"}}
    nodes = {"a": {"metadata": {"name": "a", "namespace": "ns", "uid": "u-a"}}}
    rollout._emit(
        fleet,
        nodes,
        (
            planner.Note("RolloutStepStarted", "replacing a", "a"),
            planner.Note("NodeDrained", "a: drained", "a", node_only=True),
            planner.Note("NodeReplaced", "Ready and joined", "gone", node_only=True),
            planner.Note("RolloutComplete", "every node is updated"),
        ),
    )
    assert posted == [
        ("MarketplaceFleet", "RolloutStepStarted"),
        ("MarketplaceNode", "RolloutStepStarted"),
        ("MarketplaceNode", "NodeDrained"),
        ("MarketplaceFleet", "NodeReplaced"),
        ("MarketplaceFleet", "RolloutComplete"),
    ]


@pytest.mark.parametrize(("nodes", "debounce"), [(0, 0.2), (100, 0.2), (400, 0.2), (1_000, 0.5)])
def test_a_big_fleets_loop_gathers_wake_ups_longer(nodes: int, debounce: float) -> None:
    """A pass reads every node: its passes a second shrink as the fleet grows, so their
    cost a second does not grow with it."""
    assert rollout.wake_debounce(nodes) == pytest.approx(debounce)
    assert rollout.wake_debounce(nodes) * 2_000 >= nodes
