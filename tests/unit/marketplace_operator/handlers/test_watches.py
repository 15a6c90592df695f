"""One watch-event handler per busy kind, handing each event to every part (issue 15)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, cast

import kopf
from marketplace_operator.context import Answer, Context
from marketplace_operator.handlers import rollout, watches
from marketplace_operator.handlers.policy import PolicyHolder
from marketplace_operator.metrics import Metrics
from marketplace_operator.model.mnode import Phase
from marketplace_operator.policy.ports import FleetKey
from marketplace_operator.policy.settings import PolicySettings
from marketplace_operator.render import names
from marketplace_protocol.admin import NodeStatus
from prometheus_client import CollectorRegistry

from tests.support.operator_context import bare_context

NS = "ns"


def context() -> Context:
    return bare_context(metrics=Metrics(CollectorRegistry(), phases=dict))


def counted(ctx: Context, kind: str) -> float:
    value = ctx.metrics.registry.get_sample_value(
        "marketplace_operator_watch_events_total", {"kind": kind}
    )
    return float(value or 0.0)


class Worker:
    def __init__(self) -> None:
        self.changed: list[FleetKey] = []

    def pod_changed(self, key: FleetKey) -> None:
        self.changed.append(key)


def memo(ctx: Context, worker: Worker | None = None) -> Any:
    """kopf's memo: the context, and a policy runtime of `worker` (None: policy off)."""
    holder = PolicyHolder(PolicySettings(enabled=worker is not None))
    if worker is not None:
        holder.runtime = cast("Any", SimpleNamespace(pods={}, worker=worker))
    return SimpleNamespace(ctx=ctx, policy=holder)


def pod(ip: str | None, uid: str = "pod-1") -> dict[str, Any]:
    return {
        "metadata": {"name": "mnode-n1", "namespace": NS, "uid": uid},
        "status": {"phase": "Running", "podIP": ip} if ip else {"phase": "Pending"},
    }


LABELS = {names.NODE_LABEL: "n1", names.FLEET_LABEL: "default"}


async def pod_event(
    ctx: Context, body: dict[str, Any], type: str = "MODIFIED", kopf_memo: Any = None
) -> None:
    handler = cast("Callable[..., Awaitable[None]]", watches.pod_event)  # kopf's type
    await handler(
        type=type,
        body=cast("kopf.Body", body),
        labels=cast("kopf.Labels", LABELS),
        namespace=NS,
        name="mnode-n1",
        memo=kopf_memo if kopf_memo is not None else memo(ctx),
    )


def test_each_busy_kind_has_one_event_handler() -> None:
    """kopf runs every handler of an event on its own: one per kind, not one per part."""
    registry = kopf.get_default_registry()
    plurals: list[str] = []
    for handler in registry._watching.get_all_handlers():
        selector = handler.selector
        assert selector is not None
        plurals.append(str(selector.plural or selector.any_name))
    assert plurals.count("pods") == 1
    assert plurals.count("marketplacenodes") == 1


async def test_a_pod_event_wakes_its_node_and_its_fleet_and_keeps_its_address() -> None:
    ctx = context()
    node = ctx.wakeups.register((NS, "n1"))
    fleet = ctx.wakeups.register(rollout._key(NS, "default"), node=False)
    worker = Worker()
    shared = memo(ctx, worker)
    await pod_event(ctx, pod("127.1.0.5"), kopf_memo=shared)
    assert counted(ctx, "pods") == 1  # each event counted once (the bench's work line)
    assert node.is_set()
    assert fleet.is_set()
    assert ctx.node((NS, "n1")).pod_address == ("127.1.0.5", False, "pod-1")
    assert worker.changed == [FleetKey(NS, "default")]
    await pod_event(ctx, pod("127.1.0.5"), kopf_memo=shared)  # nothing the worker reads moved
    assert worker.changed == [FleetKey(NS, "default")]
    await pod_event(ctx, pod("127.1.0.6"), kopf_memo=shared)
    assert len(worker.changed) == 2


async def test_a_deleted_pod_takes_what_was_pushed_to_it_along() -> None:
    ctx = context()
    await pod_event(ctx, pod("127.1.0.5"))
    await pod_event(ctx, pod("127.1.0.5"), type="DELETED")
    assert (NS, "n1") not in ctx.node_states


async def test_a_deleted_marketplacenode_leaves_nothing_of_it_behind() -> None:
    ctx = context()
    key = (NS, "n1")
    ctx.node(key).phase = Phase.READY
    ctx.answers.put(key, Answer("pod-1", time.monotonic(), NodeStatus(peer_id="p")))
    handler = cast("Callable[..., Awaitable[None]]", watches.mnode_event)  # kopf's type
    body = {"metadata": {"name": "n1", "namespace": NS}, "spec": {"fleet": "default"}}
    await handler(
        type="DELETED", body=body, namespace=NS, name="n1", memo=memo(ctx), rollout_fleets={}
    )
    assert key not in ctx.node_states
    assert ctx.answers.get(key) is None
    assert counted(ctx, "marketplacenodes") == 1
