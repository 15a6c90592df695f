"""A policy too large for one ConfigMap reaches a (re)starting node through its volume.

30,000 bans across fifteen BanLists compress to ~1.3 MB of gzip: more than one
ConfigMap holds, so the operator writes parts into the shard ConfigMaps and a
manifest into the fleet ConfigMap. The proof that a new node reads them from
its projected volume: the operator is stopped before the node's pod is
replaced, so no push can reach it, and the node still starts on the current
version and refuses a peer banned by the last BanList.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Kubectl, OperatorProcess, wait_for
from marketplace_operator import errors, k8s
from marketplace_operator.handlers.policy import BANLISTS
from marketplace_operator.model.banlist import MAX_ENTRIES_PER_OBJECT
from marketplace_protocol.identity import Identity
from marketplace_protocol.parts import MANIFEST_FILE, PolicyManifest, part_name
from peer_helpers import banned, peer_request
from test_policy_propagation import (  # the fleet of three nodes and its helpers
    FLEET,
    configmap_version,
    fleet,  # noqa: F401 - a fixture
    node_versions,
    pod_ips,
    serving,
    token_of,
)

BANS = 30_000
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def banlist(index: int, peers: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "marketplace.p2p.dev/v1alpha1",
        "kind": "BanList",
        "metadata": {"name": f"big-{index:02d}"},
        "spec": {
            "fleet": FLEET,
            "entries": [{"peerId": p, "reason": "e2e: large policy"} for p in peers],
        },
    }


def create(
    kube: k8s.BlockingKube, namespace: str, body: dict[str, Any], *, attempts: int = 3
) -> None:
    """Create one BanList; retried when the (shared, loaded) API server is briefly unavailable."""
    for attempt in range(attempts):
        try:
            kube.create(
                BANLISTS, {**body, "metadata": {**body["metadata"], "namespace": namespace}}
            )
            return
        except errors.Unavailable:
            if attempt == attempts - 1:
                raise
            time.sleep(1)


def manifest(kube: k8s.BlockingKube, namespace: str) -> PolicyManifest | None:
    cm = kube.get(k8s.CONFIGMAPS, namespace, f"{FLEET}-policy")
    raw = ((cm or {}).get("data") or {}).get(MANIFEST_FILE)
    return PolicyManifest.model_validate_json(raw) if raw else None


def replace_pod(kube: k8s.BlockingKube, kubectl: Kubectl, namespace: str, name: str) -> str:
    """Delete the pod and create it again from its own spec, as its (stopped) operator would;
    the old pod's uid."""
    old = kube.get(k8s.PODS, namespace, name)
    assert old is not None
    kubectl("delete", "pod", name, "-n", namespace, "--wait=true", "--timeout=60s")
    meta = {k: old["metadata"][k] for k in ("name", "namespace", "labels", "annotations")}
    meta["ownerReferences"] = old["metadata"]["ownerReferences"]
    (container,) = old["spec"]["containers"]
    container["env"].append({"name": "MARKETPLACE_NODE_LOG_LEVEL", "value": "DEBUG"})
    kube.create(
        k8s.PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": old["spec"]}
    )
    return str(old["metadata"]["uid"])


def test_a_sharded_policy_reaches_a_restarting_node_through_its_volume(
    kube: k8s.BlockingKube,
    kubectl: Kubectl,
    namespace: str,
    fleet: dict[str, str],  # noqa: F811 - the fixture imported above
    operator: OperatorProcess,
) -> None:
    rnd = random.Random(6)
    peers = ["".join(rnd.choice(ALPHABET) for _ in range(52)) for _ in range(BANS - 1)]
    canary = Identity.generate()  # a real peer, banned by the last BanList
    peers.append(canary.peer_id)
    before = configmap_version(kube, namespace) or 0
    chunks = [peers[i : i + MAX_ENTRIES_PER_OBJECT] for i in range(0, BANS, MAX_ENTRIES_PER_OBJECT)]
    for index, chunk in enumerate(chunks):
        create(kube, namespace, banlist(index, chunk))

    token = token_of(kube, namespace)

    def everyone_applied() -> int | None:
        found = manifest(kube, namespace)
        if found is None or found.version <= before:
            return None
        versions = node_versions(fleet, token)
        if set(versions.values()) != {found.version}:
            return None
        # The manifest may still be a version without the last BanList (rounds run while
        # the lists are being created): the one that counts has the canary in it.
        if not all(banned(*peer_request(ip, canary)) for ip in fleet.values()):
            return None
        return found.version

    current = wait_for(everyone_applied, timeout=90, interval=0.5, what="30,000 bans everywhere")
    found = manifest(kube, namespace)
    assert found is not None
    assert found.version >= current  # a failed write is re-issued one number up
    assert found.parts >= 2  # ~1.3 MB of gzip: more than one ConfigMap holds
    cm = kube.get(k8s.CONFIGMAPS, namespace, f"{FLEET}-policy")
    assert cm is not None
    assert not {"policy.json", "policy.json.gz"} & set(cm.get("data") or {}) | set(
        cm.get("binaryData") or {}
    )
    for index in range(1, found.parts + 1):
        shard = kube.get(k8s.CONFIGMAPS, namespace, f"{FLEET}-policy-{index}")
        assert shard is not None, f"shard {index} missing"
        assert set(shard["binaryData"]) == {part_name(index)}
        (owner,) = shard["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"]) == ("ConfigMap", cm["metadata"]["uid"])
    assert banned(*peer_request(fleet["pc"], canary))

    # No operator, no push: whatever pc starts on comes from its volume.
    operator.stop()
    stopped_on = manifest(kube, namespace)
    assert stopped_on is not None
    current = stopped_on.version  # what the volume holds once the operator is gone
    old_uid = replace_pod(kube, kubectl, namespace, "pc")

    def back() -> str | None:
        pod = kube.get(k8s.PODS, namespace, "pc")
        ip = pod_ips(kube, namespace).get("pc")
        replaced = pod is not None and pod["metadata"]["uid"] != old_uid
        return ip if replaced and ip and serving(ip) else None

    ip = wait_for(back, timeout=90, what="pc serving again")
    try:
        wait_for(
            lambda: node_versions({"pc": ip}, token)["pc"] == current,
            timeout=20,
            what="pc on the current version from its mounted volume",
        )
    except pytest.fail.Exception:
        logs = kubectl("logs", "pc", "-n", namespace, "--tail=40", check=False)
        seen = kube.get(k8s.PODS, namespace, "pc") or {"metadata": {"uid": "?"}}
        uid = seen["metadata"]["uid"]
        volumes = [*Path(".cluster").glob(f"**/kubelet/pods/{uid}/volumes/policy")]
        files = (
            sorted((p.name, p.stat().st_size) for p in volumes[0].glob("*")) if volumes else None
        )
        pytest.fail(f"pc not on v{current}; volume {files}; its log:\n{logs.stdout}{logs.stderr}")
    assert banned(*peer_request(ip, canary))
    pod = kube.get(k8s.PODS, namespace, "pc")
    assert pod is not None
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "policy"]
    assert json.dumps(volume).count("optional") == 3  # the shards, projected beside the manifest
