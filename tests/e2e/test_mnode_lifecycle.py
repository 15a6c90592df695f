"""One MarketplaceNode through its life: self-healing, graceful replacement, deletion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from e2e_helpers import (
    OperatorProcess,
    condition,
    mnode_body,
    node_cli,
    wait_for,
    wait_ready,
)
from marketplace_operator import k8s
from marketplace_operator.render import names

LABELS = {"app.kubernetes.io/managed-by": "marketplace-operator"}


def events_for(kube: k8s.BlockingKube, namespace: str, name: str) -> list[dict[str, Any]]:
    items = kube.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    return [e for e in items if e.get("involvedObject", {}).get("name") == name]


def reasons(kube: k8s.BlockingKube, namespace: str, name: str) -> set[str]:
    return {e.get("reason", "") for e in events_for(kube, namespace, name)}


def test_deleted_pod_comes_back_with_the_same_identity_and_data(
    kube: k8s.BlockingKube, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    kube.create(k8s.MNODES, mnode_body("solo", namespace, fleet="heal"))
    (before,) = wait_ready(kube, namespace, ["solo"])
    old_pod = kube.get(k8s.PODS, namespace, "solo")
    assert old_pod is not None
    content = tmp_path / "data.txt"
    content.write_text("kept across pods\n")
    address = f"http://{before['status']['podIP']}:7070"
    published = node_cli(
        "publish", "--node", address, "--name", "kept-pkg", "--version", "1.0.0", str(content)
    )
    assert published.returncode == 0, published.stderr

    assert kube.delete(k8s.PODS, namespace, "solo", grace_seconds=0)

    def replaced() -> dict[str, Any] | None:
        pod = kube.get(k8s.PODS, namespace, "solo")
        if pod is None or pod["metadata"]["uid"] == old_pod["metadata"]["uid"]:
            return None
        return pod

    wait_for(replaced, timeout=60, what="a new pod")
    (after,) = wait_ready(kube, namespace, ["solo"])
    assert after["status"]["peerId"] == before["status"]["peerId"]

    def still_there() -> bool:
        address = f"http://{after['status']['podIP']}:7070"
        got = node_cli("search", "--node", address, "kept-pkg")
        return got.returncode == 0 and any(
            r["package"]["name"] == "kept-pkg" for r in json.loads(got.stdout)["results"]
        )

    wait_for(still_there, timeout=30, what="the package to survive the pod")
    secrets = [
        s
        for s in kube.list(k8s.SECRETS, namespace, labels=LABELS)
        if s["metadata"]["name"].startswith("solo-")
    ]
    assert [s["metadata"]["name"] for s in secrets] == ["solo-identity"]


def test_spec_change_replaces_the_pod_after_a_drain(
    kube: k8s.BlockingKube, namespace: str, operator: OperatorProcess
) -> None:
    kube.create(k8s.MNODES, mnode_body("roll", namespace, fleet="change", drainTimeoutSeconds=10))
    (before,) = wait_ready(kube, namespace, ["roll"])
    old = kube.get(k8s.PODS, namespace, "roll")
    assert old is not None
    old_hash = old["metadata"]["annotations"]["marketplace.p2p.dev/pod-template-hash"]

    kube.patch(k8s.MNODES, namespace, "roll", {"spec": {"p2p": {"maxPeers": 7}}})

    def progressing() -> bool:
        obj = kube.get(k8s.MNODES, namespace, "roll")
        cond = condition(obj, "Progressing")
        return cond is not None and cond["status"] == "True"

    wait_for(progressing, timeout=30, interval=0.05, what="Progressing=True during replacement")

    def new_pod() -> dict[str, Any] | None:
        pod = kube.get(k8s.PODS, namespace, "roll")
        if pod is None or pod["metadata"]["uid"] == old["metadata"]["uid"]:
            return None
        return pod

    pod = wait_for(new_pod, timeout=60, what="the replacement pod")
    (after,) = wait_ready(kube, namespace, ["roll"])
    assert pod["metadata"]["annotations"]["marketplace.p2p.dev/pod-template-hash"] != old_hash
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["MARKETPLACE_NODE_MAX_PEERS"] == "7"
    assert after["status"]["peerId"] == before["status"]["peerId"]
    assert after["status"]["podTemplateHash"] != old_hash
    progressing_now = condition(after, "Progressing")
    assert progressing_now is not None
    assert progressing_now["status"] == "False"
    # Whoever replaced it (this node's loop, or the fleet rollout when it is installed),
    # the node was drained first and the pod deleted after. kopf posts Events from its
    # queue, and the rollout notes a replacement once it saw the new pod Ready: wait.
    wait_for(
        lambda: reasons(kube, namespace, "roll") & {"PodDeleted", "NodeReplaced"},
        timeout=30,
        what="the replacement's Event",
    )
    history = sorted(
        events_for(kube, namespace, "roll"),
        key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "",
    )
    order = [e["reason"] for e in history]
    drain = next(i for i, r in enumerate(order) if r in {"Drained", "NodeDrained"})
    delete = next(i for i, r in enumerate(order) if r in {"PodDeleted", "NodeReplaced"})
    assert drain <= delete, order
    # No change handler reads a diff, so kopf kept none on the node (`diffbase.diff_read`):
    # its finalizer is the one write of its own on the node's body.
    final = kube.get(k8s.MNODES, namespace, "roll")
    assert final is not None
    kept = [k for k in final["metadata"].get("annotations") or {} if "last-handled" in k]
    assert not kept, kept
    assert final["metadata"]["finalizers"] == ["marketplace.p2p.dev/finalizer"]


def test_deleting_a_node_drains_it_and_collects_its_children(
    kube: k8s.BlockingKube, namespace: str, operator: OperatorProcess
) -> None:
    for name in ("keep", "gone"):
        kube.create(k8s.MNODES, mnode_body(name, namespace, fleet="shrink"))
    members = wait_ready(kube, namespace, ["keep", "gone"])
    fleet = kube.get(k8s.FLEETS, namespace, "shrink")
    assert fleet is not None
    by_fleet = [names.fleet_owner_reference("shrink", fleet["metadata"]["uid"])]

    def owners(kind: k8s.Resource, name: str) -> list[dict[str, Any]] | None:
        obj = kube.get(kind, namespace, name)
        return None if obj is None else obj["metadata"].get("ownerReferences")

    # The fleet's shared objects have one owner, the MarketplaceFleet (issue 15). One an
    # older operator left owned by every member is handed over by the fleet's loop.
    wait_for(lambda: owners(k8s.SECRETS, "shrink-admin") == by_fleet, timeout=30, what="owner")
    legacy = [
        names.owner_reference_to(
            m["apiVersion"], m["kind"], m["metadata"]["name"], m["metadata"]["uid"]
        )
        for m in members
    ]
    kube.patch(
        k8s.CONFIGMAPS, namespace, "shrink-policy", {"metadata": {"ownerReferences": legacy}}
    )
    wait_for(
        lambda: owners(k8s.CONFIGMAPS, "shrink-policy") == by_fleet,
        timeout=30,
        what="the members' references replaced by the MarketplaceFleet's",
    )

    kube.delete(k8s.MNODES, namespace, "gone")
    wait_for(lambda: kube.get(k8s.MNODES, namespace, "gone") is None, timeout=60, what="deletion")
    wait_for(lambda: "Drained" in reasons(kube, namespace, "gone"), timeout=30, what="Drained")

    def children_of(node: str) -> list[str]:
        found = []
        for res in (k8s.PODS, k8s.SERVICES, k8s.PVCS, k8s.SECRETS):
            for obj in kube.list(k8s.Resource(res.plural), namespace, labels=LABELS):
                if obj["metadata"]["labels"].get("app.kubernetes.io/instance") == node:
                    found.append(f"{res.plural}/{obj['metadata']['name']}")
        return found

    wait_for(lambda: children_of("gone") == [], timeout=60, what="garbage collection of 'gone'")
    assert len(children_of("keep")) == 4
    # The fleet's shared objects stay while a member is left, and go with the last one.
    assert kube.get(k8s.SECRETS, namespace, "shrink-admin") is not None
    wait_ready(kube, namespace, ["keep"])

    def listed_members() -> list[str]:
        members = kube.get(k8s.CONFIGMAPS, namespace, "shrink-policy")
        assert members is not None
        return [m["name"] for m in json.loads(members["data"]["members.json"])["members"]]

    # The fleet's leader rewrites members.json on its next pass after the member left.
    wait_for(lambda: listed_members() == ["keep"], timeout=30, what="members.json without 'gone'")

    kube.delete(k8s.MNODES, namespace, "keep")

    def fleet_objects_gone() -> bool:
        return (
            kube.get(k8s.SECRETS, namespace, "shrink-admin") is None
            and kube.get(k8s.CONFIGMAPS, namespace, "shrink-policy") is None
        )

    wait_for(fleet_objects_gone, timeout=60, what="the fleet's Secret and ConfigMap to go")


def test_crash_looping_node_is_reported_degraded(
    kube: k8s.BlockingKube, namespace: str, operator: OperatorProcess
) -> None:
    # An image that cannot run (no such image on the local kubelet; ErrImagePull elsewhere).
    body = mnode_body("broken", namespace, fleet="crash", image="example.com/nothing/here:0")
    kube.create(k8s.MNODES, body)

    def degraded() -> dict[str, Any] | None:
        obj = kube.get(k8s.MNODES, namespace, "broken")
        cond = condition(obj, "Degraded")
        if cond is None or cond["status"] != "True":
            return None
        return obj

    obj = wait_for(degraded, timeout=90, what="Degraded=True")
    assert obj["status"]["phase"] == "Degraded"
    ready = condition(obj, "Ready")
    assert ready is not None
    assert ready["status"] == "False"
    assert obj["status"]["message"].startswith("node container: ")
    # The status is written first; kopf posts the Event from its queue a moment later.
    wait_for(
        lambda: "Degraded" in reasons(kube, namespace, "broken"),
        timeout=30,
        what="a Degraded Event",
    )
