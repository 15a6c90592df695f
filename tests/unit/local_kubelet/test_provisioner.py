"""The local provisioner: claims are provisioned concurrently, each once at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from local_kubelet.kube import JSON, Kube
from local_kubelet.provisioner import (
    CLASS_NAME,
    SELECTED_NODE,
    TMPFS_CLASS_NAME,
    Provisioner,
    Scope,
    quantity_bytes,
    storage_class,
    tmpfs_size,
    volume_for,
    wants_volume,
)


class SlowApi:
    """Holds every POST until released, counting how many are in flight at once."""

    def __init__(self) -> None:
        self.posts: list[str] = []
        self.patches: list[tuple[str, Any]] = []  # (path, body), after the POSTs
        self.release = asyncio.Event()
        self.in_flight = 0
        self.most = 0

    async def request(self, method: str, path: str, **kw: Any) -> JSON:
        if method == "PATCH":
            assert kw["content_type"] == "application/merge-patch+json"
            self.patches.append((path, kw["body"]))
            return {}
        self.posts.append(kw["body"]["spec"]["claimRef"]["name"])
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await self.release.wait()
        self.in_flight -= 1
        return {}


def claim(name: str) -> JSON:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "annotations": {SELECTED_NODE: "n1"},
        },
        "spec": {"storageClassName": CLASS_NAME, "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Pending"},
    }


async def test_claims_are_provisioned_concurrently_and_once(tmp_path: Path) -> None:
    api = SlowApi()
    provisioner = Provisioner(cast("Kube", api), tmp_path, Scope(node="n1", primary=False))
    for name in ("a", "b", "c"):
        await provisioner._on_claim("ADDED", claim(name))  # returns without waiting
    await provisioner._on_claim("MODIFIED", claim("a"))  # in flight: not twice at once
    await provisioner._on_claim("MODIFIED", claim("a"))  # (kept once: the newest)
    await asyncio.sleep(0.01)
    assert sorted(api.posts) == ["a", "b", "c"]
    assert api.most == 3
    api.release.set()
    await asyncio.sleep(0.01)
    assert api.in_flight == 0
    # The event kept meanwhile ran after the first task; the API server's 409 makes a
    # second try of a provisioned claim harmless.
    assert api.posts.count("a") == 2
    await provisioner._on_claim("MODIFIED", claim("a"))
    await asyncio.sleep(0.01)
    assert api.posts.count("a") == 3


async def test_the_selected_node_written_while_a_task_is_in_flight_is_not_lost(
    tmp_path: Path,
) -> None:
    """The primary sees a claim before the scheduler picks its Node, then the pick while
    that first task is still queued: the claim must still get its volume."""
    api = SlowApi()
    api.release.set()
    provisioner = Provisioner(cast("Kube", api), tmp_path, Scope(node="n1", primary=True))
    unscheduled = claim("a")
    del unscheduled["metadata"]["annotations"][SELECTED_NODE]
    await provisioner._on_claim("ADDED", unscheduled)  # its task has not run yet
    await provisioner._on_claim("MODIFIED", claim("a"))  # the scheduler picked n1
    await asyncio.sleep(0.01)
    assert api.posts == ["a"]


async def test_a_deleted_claim_drops_its_kept_event(tmp_path: Path) -> None:
    api = SlowApi()
    provisioner = Provisioner(cast("Kube", api), tmp_path, Scope(node="n1", primary=False))
    await provisioner._on_claim("ADDED", claim("a"))
    await provisioner._on_claim("MODIFIED", claim("a"))
    await provisioner._on_claim("DELETED", claim("a"))
    api.release.set()
    await asyncio.sleep(0.01)
    assert api.posts == ["a"]


async def test_a_task_that_fails_says_so_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(SlowApi):
        async def request(self, method: str, path: str, **kw: Any) -> JSON:
            raise ConnectionResetError("the API server went away")

    provisioner = Provisioner(cast("Kube", Broken()), tmp_path, Scope(node="n1", primary=False))
    await provisioner._on_claim("ADDED", claim("a"))
    await asyncio.sleep(0.01)
    assert "provisioning for a failed" in caplog.text
    assert "the API server went away" in caplog.text


async def test_a_provisioned_directory_is_writable_by_any_user(tmp_path: Path) -> None:
    """A real kubelet applies no fsGroup to hostPath volumes: a non-root pod must write."""
    api = SlowApi()
    api.release.set()
    provisioner = Provisioner(cast("Kube", api), tmp_path, Scope(node="n1", primary=False))
    await provisioner._on_claim("ADDED", claim("a"))
    await asyncio.sleep(0.01)
    (mode,) = await asyncio.to_thread(lambda: [p.stat().st_mode for p in tmp_path.iterdir()])
    assert mode & 0o777 == 0o777


async def test_the_provisioner_binds_the_claim_as_the_pv_controller_would(tmp_path: Path) -> None:
    """The PV controller binds one claim at a time (three writes each): 1,000 claims on a
    loaded API server waited minutes. The provisioner writes the same binding itself."""
    api = SlowApi()
    api.release.set()
    provisioner = Provisioner(cast("Kube", api), tmp_path, Scope(node="n1", primary=False))
    await provisioner._on_claim("ADDED", claim("a"))
    await asyncio.sleep(0.01)
    claim_path = "/api/v1/namespaces/ns/persistentvolumeclaims/a"
    assert api.patches == [
        ("/api/v1/persistentvolumes/pvc-uid-a/status", {"status": {"phase": "Bound"}}),
        (
            claim_path,
            {
                "metadata": {
                    "uid": "uid-a",  # a precondition: a re-created claim is not touched
                    "annotations": {
                        "pv.kubernetes.io/bind-completed": "yes",
                        "pv.kubernetes.io/bound-by-controller": "yes",
                    },
                },
                "spec": {"volumeName": "pvc-uid-a"},
            },
        ),
        (
            f"{claim_path}/status",
            {
                "metadata": {"uid": "uid-a"},
                "status": {
                    "phase": "Bound",
                    "accessModes": ["ReadWriteOnce"],
                    "capacity": {"storage": "1Gi"},
                },
            },
        ),
    ]


def test_storage_quantities_in_bytes() -> None:
    assert quantity_bytes("64Mi") == 64 * 1024**2
    assert quantity_bytes("1G") == 10**9
    assert quantity_bytes("4096") == 4096
    with pytest.raises(ValueError, match="whole number"):
        quantity_bytes("1.5Gi")


def test_only_claims_of_the_tmpfs_class_get_a_sized_tmpfs() -> None:
    small = claim("small")
    small["spec"] = {
        "storageClassName": TMPFS_CLASS_NAME, "resources": {"requests": {"storage": "32Mi"}}
    }  # fmt: skip
    assert wants_volume(small)
    assert tmpfs_size(small) == 32 * 1024**2
    assert tmpfs_size(claim("dir")) is None
    assert volume_for(small, Path("/v"), "n1")["spec"]["storageClassName"] == TMPFS_CLASS_NAME
    assert volume_for(claim("dir"), Path("/v"), "n1")["spec"]["storageClassName"] == CLASS_NAME
    assert "is-default-class" not in str(storage_class(TMPFS_CLASS_NAME))
