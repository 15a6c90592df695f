"""Helpers of the rollout end-to-end tests and benchmark: fleets, triggers, waits, checks."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from e2e_helpers import condition, mnode_body, node_cli, wait_for, wait_ready
from marketplace_operator import k8s

FLEET_API = "marketplace.p2p.dev/v1alpha1"
RESTARTED_AT = "marketplace.p2p.dev/restartedAt"
PAUSED = "marketplace.p2p.dev/paused"
DRAIN_SECONDS = 3


def make_fleet(
    kube: k8s.BlockingKube,
    namespace: str,
    fleet: str,
    size: int,
    *,
    max_unavailable: int | str = 1,
    step_timeout: int = 60,
    ready_timeout: float = 180,
    member_spec: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """A MarketplaceFleet and `size` MarketplaceNodes `<fleet>-0..`; waits until all are Ready.
    `member_spec`: more spec fields of some members, by name."""
    kube.create(
        k8s.FLEETS,
        {
            "apiVersion": FLEET_API,
            "kind": "MarketplaceFleet",
            "metadata": {"name": fleet, "namespace": namespace},
            "spec": {"maxUnavailable": max_unavailable, "stepTimeoutSeconds": step_timeout},
        },
    )
    names = [f"{fleet}-{i}" for i in range(size)]
    for name in names:
        extra = dict((member_spec or {}).get(name, {}))
        kube.create(
            k8s.MNODES,
            mnode_body(name, namespace, fleet=fleet, drainTimeoutSeconds=DRAIN_SECONDS, **extra),
        )
    wait_ready(kube, namespace, names, timeout=ready_timeout)
    wait_for(
        lambda: rollout_complete(kube, namespace, fleet, size),
        timeout=60,
        what="the fleet to report Complete",
    )
    return names


def pod_uids(kube: k8s.BlockingKube, namespace: str, names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        pod = kube.get(k8s.PODS, namespace, name)
        assert pod is not None, f"pod {name} missing"
        out[name] = pod["metadata"]["uid"]
    return out


def request_restart(kube: k8s.BlockingKube, namespace: str, names: list[str]) -> str:
    """`kubectl rollout restart`, our way: a fresh restartedAt on every MarketplaceNode."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for name in names:
        kube.patch(
            k8s.MNODES, namespace, name, {"metadata": {"annotations": {RESTARTED_AT: stamp}}}
        )
    return stamp


def fleet_status(kube: k8s.BlockingKube, namespace: str, fleet: str) -> dict[str, Any]:
    obj = kube.get(k8s.FLEETS, namespace, fleet)
    return dict((obj or {}).get("status") or {})


def rollout_complete(kube: k8s.BlockingKube, namespace: str, fleet: str, size: int) -> bool:
    status = fleet_status(kube, namespace, fleet)
    return bool(
        status.get("phase") == "Complete"
        and status.get("updated") == size
        and not status.get("steps")
    )


def wait_rollout(
    kube: k8s.BlockingKube,
    namespace: str,
    fleet: str,
    names: list[str],
    old_uids: dict[str, str],
    *,
    timeout: float,
) -> dict[str, str]:
    """Wait until every node runs a new pod and the fleet reports Complete; the new uids."""

    def done() -> dict[str, str] | None:
        if not rollout_complete(kube, namespace, fleet, len(names)):
            return None
        uids = pod_uids(kube, namespace, names)
        return uids if all(uids[n] != old_uids[n] for n in names) else None

    return wait_for(done, timeout=timeout, interval=0.5, what=f"the rollout of fleet {fleet}")


def fleet_condition(
    kube: k8s.BlockingKube, namespace: str, fleet: str, type_: str
) -> dict[str, Any] | None:
    return condition(kube.get(k8s.FLEETS, namespace, fleet), type_)


def events(kube: k8s.BlockingKube, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
    items = kube.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    return [
        e
        for e in items
        if e["involvedObject"].get("kind") == kind and e["involvedObject"].get("name") == name
    ]


def publish_everywhere(
    kube: k8s.BlockingKube, namespace: str, names: list[str], tmp_path: Path, *, keyword: str
) -> str:
    """Publish a package on the first node; wait until every node finds it. Its id."""
    content = tmp_path / "payload.txt"
    content.write_text("rolling restarts keep serving\n" * 64)
    first = kube.get(k8s.PODS, namespace, names[0])
    assert first is not None
    address = f"http://{first['status']['podIP']}:7070"
    out = node_cli("publish", "--node", address, "--name", keyword, "--version", "1.0.0",
                   "--category", "tools", str(content))  # fmt: skip
    assert out.returncode == 0, out.stderr
    package_id = str(json.loads(out.stdout)["id"])

    def everywhere() -> bool:
        for name in names:
            pod = kube.get(k8s.PODS, namespace, name)
            if pod is None:
                return False
            got = node_cli("search", "--node", f"http://{pod['status']['podIP']}:7070", keyword)
            if got.returncode != 0 or not json.loads(got.stdout)["results"]:
                return False
        return True

    wait_for(everywhere, timeout=60, interval=0.5, what="the package on every node")
    return package_id


def check_pods_owned(kube: k8s.BlockingKube, namespace: str, fleet: str, names: list[str]) -> None:
    """Exactly one pod per MarketplaceNode, controlled by it; nothing orphaned or duplicated."""
    pods = kube.list(k8s.PODS, namespace, labels={"marketplace.p2p.dev/fleet": fleet})
    by_name = {p["metadata"]["name"]: p for p in pods}
    assert sorted(by_name) == sorted(names), sorted(by_name)
    for name in names:
        mnode = kube.get(k8s.MNODES, namespace, name)
        assert mnode is not None
        owners = [
            o for o in by_name[name]["metadata"].get("ownerReferences") or [] if o.get("controller")
        ]
        assert [o["uid"] for o in owners] == [mnode["metadata"]["uid"]], owners


def settle(seconds: float) -> None:
    time.sleep(seconds)
