"""Secret/ConfigMap contents from the watches' cache, and claims resolved once per pod."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from local_kubelet.config import Settings
from local_kubelet.kube import JSON, Kube
from local_kubelet.kubelet import Kubelet
from local_kubelet.model import Pod
from local_kubelet.objects import ObjectCache, ObjectKey
from local_kubelet.pod_worker import Deps, PodWorker
from local_kubelet.podspec import PodContext
from local_kubelet.volumes import PodVolumes, VolumeError, VolumeManager, object_path

T = TypeVar("T")
NS = "ns"
SECRET: ObjectKey = (NS, "secret", "s")
CONFIG: ObjectKey = (NS, "configmap", "c")


def secret(value: str) -> JSON:
    return {"metadata": {"name": "s"}, "data": {"value": base64.b64encode(value.encode()).decode()}}


def configmap(value: str) -> JSON:
    return {"metadata": {"name": "c"}, "data": {"value": value}}


class FakeApi:
    """What the API server holds, and every GET the code under test made of it."""

    def __init__(self, objects: dict[str, JSON]) -> None:
        self.objects = objects
        self.gets: list[str] = []

    async def get(self, path: str) -> JSON | None:
        self.gets.append(path)
        return self.objects.get(path)

    async def fetch(self, key: ObjectKey) -> JSON | None:
        return await self.get(object_path(*key))


class FakeKube(Kube):
    def __init__(self, api: FakeApi) -> None:
        super().__init__("https://127.0.0.1:6443", ssl.create_default_context())
        self.api = api

    async def get(self, path: str, **params: str) -> JSON | None:
        return await self.api.get(path)


def resolved_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that must finish without waiting for anything."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast("T", done.value)
    coroutine.close()
    raise AssertionError("the coroutine waited")


# --- the cache ---------------------------------------------------------------------


async def test_a_delivered_object_is_served_without_a_get() -> None:
    api = FakeApi({})
    cache = ObjectCache(api.fetch)
    cache.observe(SECRET, "ADDED", secret("v1"))
    assert await cache.get(SECRET) == secret("v1")
    cache.observe(SECRET, "MODIFIED", secret("v2"))
    assert await cache.get(SECRET) == secret("v2")
    assert api.gets == []


def test_only_a_change_of_content_is_reported_as_a_change() -> None:
    """An owner reference added to a fleet's shared Secret must not re-sync every pod."""
    cache = ObjectCache(FakeApi({}).fetch)
    assert cache.observe(SECRET, "ADDED", secret("v1"))  # first sight
    owned = {**secret("v1"), "metadata": {"name": "s", "ownerReferences": [{"uid": "u2"}]}}
    assert not cache.observe(SECRET, "MODIFIED", owned)
    assert cache.observe(SECRET, "MODIFIED", secret("v2"))
    assert cache.observe(SECRET, "DELETED", secret("v2"))
    assert not cache.observe(SECRET, "DELETED", secret("v2"))
    assert cache.observe(SECRET, "ADDED", secret("v2"))  # back: visible again
    retyped = {**secret("v2"), "type": "kubernetes.io/tls"}
    assert cache.observe(SECRET, "MODIFIED", retyped)


async def test_a_key_no_watch_reported_on_costs_one_get() -> None:
    api = FakeApi({object_path(*SECRET): secret("v1")})
    cache = ObjectCache(api.fetch)
    assert await cache.get(SECRET) == secret("v1")
    assert await cache.get(SECRET) == secret("v1")
    assert await cache.get(CONFIG) is None  # absent: remembered as absent, too
    assert await cache.get(CONFIG) is None
    assert api.gets == [object_path(*SECRET), object_path(*CONFIG)]
    # From then on the watch keeps the entry current.
    cache.observe(SECRET, "MODIFIED", secret("v2"))
    cache.observe(CONFIG, "ADDED", configmap("c1"))
    assert await cache.get(SECRET) == secret("v2")
    assert await cache.get(CONFIG) == configmap("c1")
    assert len(api.gets) == 2


async def test_a_deleted_object_reads_as_absent_without_a_get() -> None:
    api = FakeApi({object_path(*SECRET): secret("stale")})
    cache = ObjectCache(api.fetch)
    cache.observe(SECRET, "ADDED", secret("v1"))
    cache.observe(SECRET, "DELETED", secret("v1"))
    assert await cache.get(SECRET) is None
    assert api.gets == []
    cache.observe(SECRET, "ADDED", secret("again"))
    assert await cache.get(SECRET) == secret("again")


async def test_a_forgotten_key_is_fetched_afresh() -> None:
    api = FakeApi({object_path(*SECRET): secret("current")})
    cache = ObjectCache(api.fetch)
    cache.observe(SECRET, "ADDED", secret("old"))
    cache.forget(SECRET)
    assert await cache.get(SECRET) == secret("current")
    assert api.gets == [object_path(*SECRET)]


async def test_an_event_during_the_first_get_wins_over_its_answer() -> None:
    answer = asyncio.Event()

    async def slow_fetch(_: ObjectKey) -> JSON | None:
        await answer.wait()
        return secret("read before the change")

    cache = ObjectCache(slow_fetch)
    reading = asyncio.create_task(cache.get(SECRET))
    await asyncio.sleep(0)
    cache.observe(SECRET, "MODIFIED", secret("changed"))
    answer.set()
    assert await reading == secret("changed")
    assert await cache.get(SECRET) == secret("changed")


# --- the kubelet's watch callback ------------------------------------------------------


def pod_showing(volumes: list[JSON], namespace: str = NS, name: str = "p") -> Pod:
    return Pod.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
            "spec": {"containers": [{"name": "main", "image": "x"}], "volumes": volumes},
        }
    )


class RecordingWorker:
    """Reads the cache the moment it is woken, as a woken PodWorker's volume sync will."""

    def __init__(self, pod: Pod, cache: ObjectCache) -> None:
        self.pod = pod
        self._cache = cache
        self.seen: list[JSON | None] = []

    def refresh_volumes(self) -> None:
        self.seen.append(resolved_now(self._cache.get(SECRET)))


async def test_the_cache_is_updated_before_the_pods_showing_the_object_are_woken() -> None:
    api = FakeApi({object_path(*SECRET): secret("what a GET would read")})
    cache = ObjectCache(api.fetch)
    kubelet = Kubelet(cast("Settings", None), cast("Kube", None), cast("Deps", None), cache)
    showing = RecordingWorker(pod_showing([{"name": "v", "secret": {"secretName": "s"}}]), cache)
    elsewhere = RecordingWorker(
        pod_showing([{"name": "v", "secret": {"secretName": "s"}}], namespace="other", name="o"),
        cache,
    )
    unrelated = RecordingWorker(pod_showing([], name="u"), cache)
    for worker in (showing, elsewhere, unrelated):
        kubelet.workers[worker.pod.metadata.uid] = cast("PodWorker", worker)

    await kubelet.on_object(SECRET, "ADDED", secret("v1"))
    await kubelet.on_object(SECRET, "MODIFIED", secret("v2"))
    await kubelet.on_object(SECRET, "DELETED", secret("v2"))

    assert showing.seen == [secret("v1"), secret("v2"), None]
    assert elsewhere.seen == []
    assert unrelated.seen == []
    assert api.gets == []


async def test_objects_are_watched_while_a_live_pod_shows_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Counted per object as pods start and end (no scan of every pod): the watch of an
    object two pods show outlives the first pod, and an unwatched entry is forgotten."""
    watched: list[str] = []

    async def inform(_kube: Any, path: str, _on: Any, params: dict[str, str]) -> None:
        watched.append(f"{path}?{params['fieldSelector']}")
        await asyncio.Event().wait()

    monkeypatch.setattr("local_kubelet.kubelet.inform", inform)
    cache = ObjectCache(FakeApi({}).fetch)
    kubelet = Kubelet(cast("Settings", None), cast("Kube", None), cast("Deps", None), cache)
    a = pod_showing(
        [{"name": "v", "secret": {"secretName": "s"}}, {"name": "w", "configMap": {"name": "c"}}],
        name="a",
    )
    b = pod_showing([{"name": "v", "secret": {"secretName": "s"}}], name="b")
    kubelet._show("uid-a", a)
    kubelet._show("uid-b", b)
    await asyncio.sleep(0)
    assert set(kubelet._object_watches) == {SECRET, CONFIG}
    assert sorted(watched) == [
        "/api/v1/namespaces/ns/configmaps?metadata.name=c",
        "/api/v1/namespaces/ns/secrets?metadata.name=s",
    ]  # one watch each, though two pods show the Secret
    cache.observe(CONFIG, "ADDED", configmap("x"))
    config_watch = kubelet._object_watches[CONFIG]
    kubelet._unshow("uid-a")
    assert set(kubelet._object_watches) == {SECRET}
    await asyncio.sleep(0)
    assert config_watch.cancelled()
    assert CONFIG not in cache._objects  # forgotten: a later pod fetches afresh
    kubelet._unshow("uid-b")
    kubelet._unshow("uid-b")  # a second end of the same pod changes nothing
    assert kubelet._object_watches == {}


# --- volumes -----------------------------------------------------------------------------

CONTEXT = PodContext(
    pod_ip="127.1.0.2",
    host_ip="127.0.0.1",
    node_name="local-node",
    api_host="127.0.0.1",
    api_port=6443,
    base_env={},
    node_cpu="2",
)


def text(directory: str) -> str:
    return Path(directory, "value").read_text()


def visible_files(directory: str) -> list[str]:
    """What a container lists in the volume (atomic_dir's ..names are hidden)."""
    return [p.name for p in Path(directory).iterdir() if not p.name.startswith("..")]


def manager(api: FakeApi, cache: ObjectCache, tmp_path: Path) -> VolumeManager:
    return VolumeManager(FakeKube(api), cache, tmp_path / "state")


async def test_volume_files_come_from_the_cache(tmp_path: Path) -> None:
    api = FakeApi({object_path(*SECRET): secret("v1"), object_path(*CONFIG): configmap("c1")})
    cache = ObjectCache(api.fetch)
    volumes = manager(api, cache, tmp_path)
    pod = pod_showing(
        [
            {"name": "s", "secret": {"secretName": "s"}},
            {"name": "p", "projected": {"sources": [{"configMap": {"name": "c"}}]}},
        ]
    )
    state = PodVolumes(root=tmp_path / "pod")
    assert await volumes.sync(pod, CONTEXT, state)
    assert text(state.dirs["s"]) == "v1"
    assert text(state.dirs["p"]) == "c1"
    assert sorted(api.gets) == sorted([object_path(*SECRET), object_path(*CONFIG)])

    for _ in range(3):  # pod updates: nothing read from the API server
        assert not await volumes.sync(pod, CONTEXT, state)
    cache.observe(SECRET, "MODIFIED", secret("v2"))
    assert await volumes.sync(pod, CONTEXT, state)
    assert text(state.dirs["s"]) == "v2"
    assert len(api.gets) == 2


@pytest.mark.parametrize("optional", [True, False])
async def test_a_deleted_object_empties_an_optional_volume_and_fails_a_required_one(
    tmp_path: Path, optional: bool
) -> None:
    api = FakeApi({})
    cache = ObjectCache(api.fetch)
    volumes = manager(api, cache, tmp_path)
    pod = pod_showing([{"name": "s", "secret": {"secretName": "s", "optional": optional}}])
    state = PodVolumes(root=tmp_path / "pod")
    cache.observe(SECRET, "ADDED", secret("v1"))
    await volumes.sync(pod, CONTEXT, state)
    cache.observe(SECRET, "DELETED", secret("v1"))
    if optional:
        assert await volumes.sync(pod, CONTEXT, state)
        assert visible_files(state.dirs["s"]) == []
    else:
        with pytest.raises(VolumeError, match='secret "s" not found'):
            await volumes.sync(pod, CONTEXT, state)
        assert text(state.dirs["s"]) == "v1"  # kept as it was
    assert api.gets == []


def claim(phase: str) -> JSON:
    return {
        "metadata": {"uid": "claim-uid"},
        "spec": {"volumeName": "pv"},
        "status": {"phase": phase},
    }


async def test_a_claim_is_resolved_once_it_is_bound_then_never_read_again(tmp_path: Path) -> None:
    claim_path = f"/api/v1/namespaces/{NS}/persistentvolumeclaims/data"
    pv_path = "/api/v1/persistentvolumes/pv"
    api = FakeApi(
        {
            claim_path: claim("Pending"),
            pv_path: {"spec": {"hostPath": {"path": str(tmp_path / "pv")}}},
        }
    )
    volumes = manager(api, ObjectCache(api.fetch), tmp_path)
    pod = pod_showing([{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}])
    state = PodVolumes(root=tmp_path / "pod")

    with pytest.raises(VolumeError, match="not bound"):
        await volumes.sync(pod, CONTEXT, state)
    api.objects[claim_path] = claim("Bound")
    await volumes.sync(pod, CONTEXT, state)
    assert state.dirs["d"] == str(tmp_path / "pv")
    assert (tmp_path / "pv").is_dir()
    assert api.gets == [claim_path, claim_path, pv_path]

    for _ in range(3):
        await volumes.sync(pod, CONTEXT, state)
    assert state.dirs["d"] == str(tmp_path / "pv")
    assert len(api.gets) == 3

    # Another pod (a replacement) resolves the claim for itself.
    replacement = PodVolumes(root=tmp_path / "pod2")
    await volumes.sync(pod, CONTEXT, replacement)
    assert replacement.dirs["d"] == str(tmp_path / "pv")
    assert api.gets[3:] == [claim_path, pv_path]
