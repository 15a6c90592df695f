"""What the operator keeps of a pod's status reads the same as the whole status (issue 15)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from marketplace_operator.reconcile.observe import pod_status_kept, pod_view
from marketplace_operator.render import names

STAMP = "2026-12-05T02:20:59Z"


def pod(status: dict[str, Any], *, deleting: bool = False) -> dict[str, Any]:
    """A pod as the watch delivers it: metadata, a spec and `status`."""
    meta: dict[str, Any] = {
        "name": "scale-0",
        "uid": "u-0",
        "labels": {names.NODE_LABEL: "scale-0"},
        "annotations": {names.TEMPLATE_HASH_ANNOTATION: "d336", "x": "y"},
        "ownerReferences": [{"uid": "mn-0", "controller": True, "kind": "MarketplaceNode"}],
        "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}],
    }
    if deleting:
        meta["deletionTimestamp"] = STAMP
    return {"metadata": meta, "spec": {"nodeName": "local-node"}, "status": status}


def condition(type_: str, status: str, **extra: str) -> dict[str, Any]:
    return {
        "type": type_, "status": status, "lastTransitionTime": STAMP, "lastProbeTime": None,
        **extra,
    }  # fmt: skip


def container(**extra: Any) -> dict[str, Any]:
    return {
        "name": "node", "image": "ghcr.io/marketplace-fleet/node:0.1.0",
        "imageID": "sha256:" + "a" * 64, "containerID": "local://" + "b" * 64, "ready": True,
        "restartCount": 0, "lastState": {"terminated": {"exitCode": 1, "finishedAt": STAMP}},
        **extra,
    }  # fmt: skip


RUNNING: dict[str, Any] = {
    "phase": "Running", "podIP": "10.21.0.5", "podIPs": [{"ip": "10.21.0.5"}],
    "hostIP": "10.21.0.1", "hostIPs": [{"ip": "10.21.0.1"}], "startTime": STAMP,
    "qosClass": "BestEffort",
    "conditions": [
        condition("PodReadyToStartContainers", "True"), condition("Initialized", "True"),
        condition("Ready", "True"), condition("ContainersReady", "True"),
        condition(names.JOINED_CONDITION, "True", reason="Joined", message="serving"),
        condition("PodScheduled", "True"),
    ],
    "containerStatuses": [container(started=True, state={"running": {"startedAt": STAMP}})],
}  # fmt: skip
SHAPES: dict[str, dict[str, Any]] = {
    "running, ready and joined": RUNNING,
    "not joined": {
        **RUNNING,
        "conditions": [condition(names.JOINED_CONDITION, "False"), condition("Ready", "False")],
    },
    "started, not ready": {
        **RUNNING,
        "containerStatuses": [container(started=True, ready=False, state={"running": {}})],
    },
    "not started": {**RUNNING, "containerStatuses": [container(started=False, state={})]},
    "crash loop": {
        **RUNNING,
        "containerStatuses": [
            container(
                restartCount=4,
                started=False,
                state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
            )
        ],
    },
    "image not pulled": {
        "phase": "Pending",
        "hostIP": "10.21.0.1",
        "containerStatuses": [
            container(state={"waiting": {"reason": "ErrImagePull", "message": "not found"}})
        ],
    },
    "unschedulable": {
        "phase": "Pending",
        "conditions": [
            condition("PodScheduled", "False", reason="Unschedulable", message="0/3 nodes fit")
        ],
    },
    "scheduled, no status yet": {"phase": "Pending"},
    "empty": {},
    "failed": {**RUNNING, "phase": "Failed", "podIP": None},
}


@pytest.mark.parametrize("deleting", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_the_kept_status_reads_as_the_whole_one(shape: str, deleting: bool) -> None:
    whole = pod(copy.deepcopy(SHAPES[shape]), deleting=deleting)
    kept = {**whole, "status": pod_status_kept(whole["status"])}
    assert pod_view(kept) == pod_view(whole)
    assert kept["status"].get("podIP") == whole["status"].get("podIP")  # the rollout reads it


def test_the_kept_status_holds_no_timestamps_images_or_past_states() -> None:
    kept = pod_status_kept(copy.deepcopy(RUNNING))
    text = repr(kept)
    for gone in (STAMP, "image", "sha256:", "local://", "lastState", "podIPs", "qosClass"):
        assert gone not in text
    assert kept["containerStatuses"] == [{"restartCount": 0, "started": True}]


def test_the_kept_status_shares_nothing_with_the_event() -> None:
    """New objects only: a kept list or dict of the parsed event would keep it around."""
    status = copy.deepcopy(SHAPES["crash loop"])
    kept = pod_status_kept(status)
    ids = {id(v) for v in (status["conditions"], *status["conditions"])}
    ids |= {id(status["containerStatuses"][0]["state"]["waiting"])}
    assert not ids & {id(kept["conditions"]), *map(id, kept["conditions"])}
    assert id(kept["containerStatuses"][0]["state"]["waiting"]) not in ids
