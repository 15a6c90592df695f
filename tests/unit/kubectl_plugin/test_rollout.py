"""`kubectl marketplace rollout`: patches, and when a rollout counts as done."""

from __future__ import annotations

from marketplace_kubectl import rollout

from . import objects as o

STAMP = "2026-01-01T12:00:00Z"


def test_patches_touch_only_the_annotations() -> None:
    assert rollout.restart_patch(STAMP) == {
        "metadata": {"annotations": {"marketplace.p2p.dev/restartedAt": STAMP}}
    }
    assert rollout.pause_patch(True) == {
        "metadata": {"annotations": {"marketplace.p2p.dev/paused": "true"}}
    }
    assert rollout.pause_patch(False) == {
        "metadata": {"annotations": {"marketplace.p2p.dev/paused": None}}
    }


def test_complete_only_when_every_pod_answers_the_restart_request() -> None:
    nodes = [o.mnode("a", restarted_at=STAMP), o.mnode("b", restarted_at=STAMP)]
    stale = {"a": o.pod("a", restarted_at=STAMP), "b": o.pod("b")}
    # the fleet still says Complete from before the request: not done
    got = rollout.progress(o.fleet(), nodes, stale)
    assert got.state is rollout.State.PROGRESSING
    assert "1 of 2 nodes updated" in got.message
    assert not got.finished
    fresh = {"a": o.pod("a", restarted_at=STAMP), "b": o.pod("b", restarted_at=STAMP)}
    done = rollout.progress(o.fleet(), nodes, fresh)
    assert done.state is rollout.State.COMPLETE
    assert done.finished


def test_a_node_not_ready_for_its_generation_is_not_settled() -> None:
    pods = {"a": o.pod("a")}
    assert rollout.node_settled(o.mnode("a"), pods["a"])
    assert not rollout.node_settled(o.mnode("a", generation=2, observed=1), pods["a"])
    assert not rollout.node_settled(o.mnode("a", ready="False"), pods["a"])
    assert not rollout.node_settled(o.mnode("a"), None)
    terminating = o.pod("a")
    terminating["metadata"]["deletionTimestamp"] = STAMP
    assert not rollout.node_settled(o.mnode("a"), terminating)


def test_degraded_paused_and_waiting() -> None:
    nodes = [o.mnode("a")]
    pods = {"a": o.pod("a")}
    degraded = rollout.progress(o.fleet(phase="Degraded", degraded=True), nodes, pods)
    assert degraded.state is rollout.State.DEGRADED
    assert "b: crash-looping" in degraded.message
    paused = rollout.progress(o.fleet(phase="Paused", paused=True, plan=["a"]), nodes, pods)
    assert paused.state is rollout.State.PAUSED
    assert "rollout resume demo" in paused.message
    moving_fleet = o.fleet(
        phase="Progressing", steps=[{"node": "a", "phase": "Draining"}], blocked_by="a: draining"
    )
    moving_fleet["status"]["current"] = "a"
    moving = rollout.progress(moving_fleet, nodes, pods)
    assert moving.state is rollout.State.PROGRESSING
    assert moving.message.endswith("1 of 1 nodes updated, replacing a, waiting for: a: draining")
    assert rollout.progress(None, nodes, pods).state is rollout.State.PROGRESSING
    resumed = rollout.progress(o.fleet(phase="Paused", plan=["a"]), nodes, pods)
    assert resumed.state is rollout.State.PROGRESSING  # annotation gone, phase not yet updated
