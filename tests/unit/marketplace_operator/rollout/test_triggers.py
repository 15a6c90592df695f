"""The trigger inputs: what makes a node stale, read from real API-shaped objects."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from marketplace_operator import nodeloop
from marketplace_operator.model.fleet import PAUSED_ANNOTATION, RESTARTED_AT_ANNOTATION
from marketplace_operator.render import names, pod
from marketplace_operator.rollout import triggers
from marketplace_operator.rollout.observation import Drain

DEFAULT = "ghcr.io/marketplace-fleet/node:1"


def mnode(name: str = "n1", *, image: str = "", restart: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}"}
    if restart is not None:
        meta["annotations"] = {RESTARTED_AT_ANNOTATION: restart}
    spec: dict[str, Any] = {"fleet": "f", "drainTimeoutSeconds": 5}
    if image:
        spec["image"] = image
    return {"metadata": meta, "spec": spec}


def rendered_pod(node: dict[str, Any], *, default_image: str = DEFAULT) -> dict[str, Any]:
    """The pod the core's renderer makes for `node`, as the API would return it."""
    ref = names.NodeRef(node["metadata"]["name"], "ns", node["metadata"]["uid"], "f")
    body = pod.pod(ref, pod.inputs_of(node, default_image=default_image))
    body["metadata"]["uid"] = "pod-uid"
    body["status"] = {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "ContainersReady", "status": "True"},
            {"type": names.JOINED_CONDITION, "status": "True"},
        ],
    }
    return body


def test_a_pod_rendered_for_the_node_is_on_target() -> None:
    node = mnode()
    view = triggers.node_view(node, rendered_pod(node), default_image=DEFAULT)
    assert view.on_target
    assert view.available
    assert view.pod is not None
    assert view.pod.uid == "pod-uid"
    assert view.grace == timedelta(seconds=5 + pod.GRACE_MARGIN_SECONDS)


def test_a_restart_request_makes_the_pod_stale_once() -> None:
    old = rendered_pod(mnode())
    asked = mnode(restart="2026-01-01T00:00:00Z")
    view = triggers.node_view(asked, old, default_image=DEFAULT)
    assert not view.on_target
    assert view.desired.restart == "2026-01-01T00:00:00Z"
    new = rendered_pod(asked)
    assert new["metadata"]["annotations"][RESTARTED_AT_ANNOTATION] == "2026-01-01T00:00:00Z"
    assert triggers.node_view(asked, new, default_image=DEFAULT).on_target


def test_the_default_image_moves_only_nodes_that_follow_it() -> None:
    follower, pinned = mnode("a"), mnode("b", image="example.org/node:pinned")
    pods = {"a": rendered_pod(follower), "b": rendered_pod(pinned)}
    bumped = "ghcr.io/marketplace-fleet/node:2"
    assert not triggers.node_view(follower, pods["a"], default_image=bumped).on_target
    assert triggers.node_view(pinned, pods["b"], default_image=bumped).on_target


@pytest.mark.parametrize(
    ("conditions", "extra", "ready", "joined", "deleting", "failed"),
    [
        ({"Ready": "True", names.JOINED_CONDITION: "True"}, {}, True, True, False, False),
        ({"Ready": "False", names.JOINED_CONDITION: "True"}, {}, False, True, False, False),
        ({"Ready": "False"}, {}, False, False, False, False),
        (
            {"Ready": "True"},
            {"deletionTimestamp": "2026-01-01T00:00:00Z"},
            True,
            False,
            True,
            False,
        ),
    ],
)
def test_pod_conditions_are_read(
    conditions: dict[str, str],
    extra: dict[str, str],
    ready: bool,
    joined: bool,
    deleting: bool,
    failed: bool,
) -> None:
    body = rendered_pod(mnode())
    body["metadata"].update(extra)
    body["status"]["conditions"] = [{"type": t, "status": s} for t, s in conditions.items()]
    view = triggers.node_view(mnode(), body, default_image=DEFAULT, drain=Drain.DRAINING)
    assert view.pod is not None
    p = view.pod
    assert (p.ready, p.joined, p.deleting, p.failed, p.drain) == (
        ready,
        joined,
        deleting,
        failed,
        Drain.DRAINING,
    )


def test_a_crash_looping_or_ended_pod_counts_as_failed() -> None:
    body = rendered_pod(mnode())
    body["status"]["containerStatuses"] = [
        {"restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    ]
    view = triggers.node_view(mnode(), body, default_image=DEFAULT)
    assert view.pod is not None
    assert view.pod.failed
    body = rendered_pod(mnode())
    body["status"]["phase"] = "Failed"
    assert not triggers.node_view(mnode(), body, default_image=DEFAULT).available


def test_a_pod_without_a_hash_is_never_current() -> None:
    body = rendered_pod(mnode())
    del body["metadata"]["annotations"]
    assert not triggers.node_view(mnode(), body, default_image=DEFAULT).on_target


def test_no_pod() -> None:
    view = triggers.node_view(mnode(), None, default_image=DEFAULT)
    assert view.pod is None
    assert not view.available


@pytest.mark.parametrize(
    ("fleet", "budget", "paused", "timeout"),
    [
        (None, 1, False, 300),
        ({"spec": {"maxUnavailable": 2, "stepTimeoutSeconds": 30}}, 2, False, 30),
        ({"spec": {"maxUnavailable": "10%"}}, 100, False, 300),  # of the 1,000 members
        ({"spec": {"maxUnavailable": 1500}}, 1500, False, 300),
        ({"metadata": {"annotations": {PAUSED_ANNOTATION: "true"}}}, 1, True, 300),
        ({"metadata": {"annotations": {PAUSED_ANNOTATION: "false"}}}, 1, False, 300),
    ],
)
def test_fleet_settings(
    fleet: dict[str, Any] | None, budget: int, paused: bool, timeout: int
) -> None:
    got = triggers.fleet_settings(fleet, members=1000, settle=timedelta(seconds=1))
    assert (got.max_unavailable, got.paused, got.step_timeout.total_seconds()) == (
        budget,
        paused,
        timeout,
    )


def test_fleet_status_round_trips_and_ignores_foreign_fields() -> None:
    raw = {
        "status": {
            "steps": [
                {
                    "node": "a",
                    "phase": "Draining",
                    "targetHash": "h",
                    "startedAt": "2026-01-01T00:00:00Z",
                    "phaseSince": "2026-01-01T00:00:01Z",
                }
            ],
            "kopf": {"progress": {}},
        }
    }
    status = triggers.fleet_status(raw)
    rec = triggers.record(status)
    assert [s.node for s in rec.steps] == ["a"]
    dumped = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert triggers.fleet_status({"status": dumped}) == status
    assert triggers.fleet_status({"status": {"steps": "garbage"}}).steps == []


@pytest.mark.parametrize("restart", [None, "2026-01-01T00:00:00Z", "r" * 100])  # any length
@pytest.mark.parametrize("image", ["", "example.org/node:pinned"])
def test_the_rollout_wants_the_hash_the_node_reconcile_renders(
    restart: str | None, image: str
) -> None:
    """Two readers of one MarketplaceNode must agree on its pod, or a step never completes."""
    node = mnode(image=image, restart=restart)
    ctx = SimpleNamespace(settings=SimpleNamespace(default_node_image=DEFAULT))
    theirs = pod.template_hash(nodeloop.desired_of(ctx, node).pod_inputs)  # type: ignore[arg-type]
    assert triggers.desired_revision(node, default_image=DEFAULT).template_hash == theirs


def _slice(*endpoints: tuple[str, bool | None]) -> dict[str, Any]:
    def one(ip: str, ready: bool | None) -> dict[str, Any]:
        conditions = {} if ready is None else {"ready": ready}
        return {"addresses": [ip], "conditions": conditions}

    return {"endpoints": [one(ip, ready) for ip, ready in endpoints]}


@pytest.mark.parametrize(
    ("slices", "ip", "expected"),
    [
        ([], "10.0.0.1", False),  # no slices (e.g. loopback addresses are not published)
        ([_slice(("10.0.0.1", True))], "10.0.0.1", True),
        ([_slice(("10.0.0.1", None))], "10.0.0.1", True),  # absent `ready` means ready
        ([_slice(("10.0.0.1", False))], "10.0.0.1", False),
        ([_slice(("10.0.0.2", True))], "10.0.0.1", False),
        ([_slice(("10.0.0.1", False)), _slice(("10.0.0.1", True))], "10.0.0.1", True),
        ([_slice(("10.0.0.1", True))], None, False),
        ([{"endpoints": None}], "10.0.0.1", False),
    ],
)
def test_routed(slices: list[dict[str, Any]], ip: str | None, expected: bool) -> None:
    assert triggers.routed(slices, ip) is expected
