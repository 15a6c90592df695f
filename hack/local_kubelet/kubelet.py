"""Wire the kubelet together: the pod watch, pod workers, Secret/ConfigMap watches, node, logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp

from local_kubelet import images, logserver, runtime
from local_kubelet.config import Settings
from local_kubelet.informer import inform
from local_kubelet.ips import IpPool
from local_kubelet.kube import JSON, Kube
from local_kubelet.model import Pod
from local_kubelet.netns import PodNetwork, cni_config
from local_kubelet.node import NodeAgent
from local_kubelet.objects import ObjectCache, ObjectKey
from local_kubelet.pod_worker import Deps, PodWorker
from local_kubelet.provisioner import Provisioner, Scope
from local_kubelet.proxy import ServiceProxy
from local_kubelet.volumes import VolumeManager, object_path, referenced_objects

log = logging.getLogger(__name__)


class Kubelet:
    """Keeps one PodWorker per pod bound to this node, and the watches they need."""

    def __init__(self, settings: Settings, kube: Kube, deps: Deps, objects: ObjectCache) -> None:
        self._settings = settings
        self._kube = kube
        self._deps = deps
        self._objects = objects
        self.workers: dict[str, PodWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Pods whose worker finished (deleted, waiting only for finalizers):
        # later events for them start nothing.
        self._finished: set[str] = set()
        # (namespace, kind, name) -> the watch task keeping its cache entry fresh
        self._object_watches: dict[ObjectKey, asyncio.Task[None]] = {}
        # pod uid -> the objects its volumes show (a pod's volumes never change), and how
        # many live workers show each: watches follow these counts, not a scan of all pods.
        self._shown: dict[str, frozenset[ObjectKey]] = {}
        self._showing: Counter[ObjectKey] = Counter()

    async def on_pod(self, kind: str, obj: JSON) -> None:
        pod = Pod.model_validate(obj)
        uid = pod.metadata.uid
        worker = self.workers.get(uid)
        if kind == "DELETED":
            self._finished.discard(uid)
            if worker is not None:
                worker.gone()
            return
        if uid in self._finished:
            return
        if worker is not None:
            worker.update(pod)
            return
        worker = PodWorker(pod, self._deps)
        self.workers[uid] = worker
        task = asyncio.create_task(worker.run(), name=f"pod {pod.key}")
        self._tasks[uid] = task
        task.add_done_callback(lambda _: self._forget(uid))
        self._show(uid, pod)

    def _forget(self, uid: str) -> None:
        task = self._tasks.pop(uid, None)
        self.workers.pop(uid, None)
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error("pod worker %s crashed", uid, exc_info=task.exception())
        elif task is not None and not task.cancelled():
            self._finished.add(uid)
        self._unshow(uid)

    async def on_object(self, key: ObjectKey, event: str, obj: JSON) -> None:
        """A watched Secret or ConfigMap changed: cache it, then wake the pods showing it
        (only if its content changed: an owner added to a fleet's shared Secret would
        otherwise re-sync every pod mounting it).

        In this order, so the volume sync each woken worker runs reads the new object.
        """
        if not self._objects.observe(key, event, obj):
            return
        for worker in list(self.workers.values()):
            pod = worker.pod
            if pod.metadata.namespace == key[0] and key[1:] in referenced_objects(pod):
                worker.refresh_volumes()

    def _show(self, uid: str, pod: Pod) -> None:
        """Watch the Secrets and ConfigMaps the new pod's volumes show, unless watched.

        Counted per object, not rebuilt from every live pod at each pod's start and end:
        that scan was a tenth of each kubelet's CPU in a 1,000-pod rollout (issue 15)."""
        shown = frozenset(
            (pod.metadata.namespace, kind, name) for kind, name in referenced_objects(pod)
        )
        self._shown[uid] = shown
        for key in shown:
            self._showing[key] += 1
            if key not in self._object_watches:
                self._watch(key)

    def _unshow(self, uid: str) -> None:
        """Stop watching what no live pod's volumes show any more."""
        for key in self._shown.pop(uid, frozenset()):
            self._showing[key] -= 1
            if self._showing[key] > 0:
                continue
            del self._showing[key]
            task = self._object_watches.pop(key, None)
            if task is not None:
                task.cancel()
            # Unwatched, the entry would go stale: a later pod fetches afresh.
            self._objects.forget(key)

    def _watch(self, key: ObjectKey) -> None:
        namespace, kind, name = key
        plural = "secrets" if kind == "secret" else "configmaps"

        async def changed(event: str, obj: JSON) -> None:
            await self.on_object(key, event, obj)

        self._object_watches[key] = asyncio.create_task(
            inform(
                self._kube,
                f"/api/v1/namespaces/{namespace}/{plural}",
                changed,
                params={"fieldSelector": f"metadata.name={name}"},
            )
        )

    async def close(self) -> None:
        """Stop every pod worker and watch (before the HTTP sessions close).

        The container processes live on: the next kubelet run, or
        `cluster.sh down`, ends them.
        """
        tasks = [*self._tasks.values(), *self._object_watches.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def locate_log(self, namespace: str, pod: str, container: str, previous: bool) -> Path | None:
        for worker in self.workers.values():
            meta = worker.pod.metadata
            if meta.namespace != namespace or meta.name != pod:
                continue
            for runner in [*worker.runners, *worker.init_runners]:
                if runner.spec.name == container:
                    attempt = runner.restart_count - (1 if previous else 0)
                    return runner.log_file(attempt) if attempt >= 0 else None
        return None

    def log_is_live(self, path: Path) -> bool:
        return any(
            runner.log_file(runner.restart_count) == path and not runner.done
            for worker in self.workers.values()
            for runner in worker.runners
        )

    def on_pod_list(self, pods: list[JSON]) -> None:
        """Before any worker starts: kill processes of pods no longer here, keep IPs."""
        uids = {pod["metadata"]["uid"] for pod in pods}
        leftovers = self._deps.leftovers
        for key in [k for k in leftovers if k.split("_", 1)[0] not in uids]:
            leftovers.pop(key).signal(signal.SIGKILL)
        for pod in pods:
            address = pod.get("status", {}).get("podIP")
            if address and not pod["spec"].get("hostNetwork"):
                self._deps.ips.reserve(pod["metadata"]["uid"], address)

    async def run(self) -> None:
        await inform(
            self._kube,
            "/api/v1/pods",
            self.on_pod,
            params={"fieldSelector": f"spec.nodeName={self._settings.node_name}"},
            on_list=self.on_pod_list,
        )


def which_in(venv_bin: Path) -> Callable[[str], str | None]:
    """Find a command in the virtualenv first, then on PATH."""

    def which(name: str) -> str | None:
        candidate = venv_bin / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        return shutil.which(name)

    return which


def pod_network(settings: Settings) -> PodNetwork | None:
    """The Node's pod network under POD_NETWORK=netns; None under loopback."""
    if settings.pod_network != "netns":
        return None
    config = cni_config(
        name=settings.netns_prefix,
        bridge=settings.bridge,
        cluster=settings.cluster_pod_cidr or settings.pod_cidr,
        node=settings.pod_cidr,
        data_dir=settings.state_dir / "cni-ipam",
        services=settings.service_cidr,
    )
    return PodNetwork(config, f"{settings.netns_prefix}-{settings.node_name}")


async def service_proxy(settings: Settings, admin: Kube) -> None:
    """ClusterIP Services for the pods of every local Node (one bridge): the first Node's job."""
    await ServiceProxy(
        admin,
        prefix=settings.netns_prefix,
        bridge=settings.bridge,
        pod_range=settings.cluster_pod_cidr or settings.pod_cidr,
        service_range=settings.service_cidr,
        api_server=admin.server.split("//", 1)[1],
    ).run()


async def main(settings: Settings) -> None:
    """Run until cancelled."""
    leftovers = runtime.recorded(settings.pid_dir)
    if leftovers:
        log.info("found %d container processes of an earlier run to adopt", len(leftovers))
    kube = Kube.from_kubeconfig(settings.kubeconfig)
    admin = Kube.from_kubeconfig(settings.admin_kubeconfig)
    async with aiohttp.ClientSession() as session:
        path = os.pathsep.join([str(settings.venv_bin), "/usr/local/bin", "/usr/bin", "/bin"])

        async def fetch(key: ObjectKey) -> JSON | None:
            return await kube.get(object_path(*key))

        objects = ObjectCache(fetch)
        deps = Deps(
            settings=settings,
            kube=kube,
            volumes=VolumeManager(kube, objects, settings.state_dir),
            ips=IpPool(settings.pod_cidr),
            table=images.load_table(settings.images_file),
            session=session,
            which=which_in(settings.venv_bin),
            base_env={"PATH": path, "HOME": "/root", "LANG": "C.UTF-8"},
            leftovers=leftovers,
            network=pod_network(settings),
        )
        kubelet = Kubelet(settings, kube, deps, objects)
        app = logserver.make_app(kubelet.locate_log, kubelet.log_is_live)
        context = logserver.tls_context(settings.tls_cert, settings.tls_key, settings.client_ca)
        web_runner = await logserver.serve(app, settings.host_ip, settings.port, context)
        try:
            await asyncio.gather(
                NodeAgent(kube, settings).run(),
                Provisioner(
                    admin,
                    settings.volumes_dir,
                    Scope(node=settings.node_name, primary=settings.primary),
                ).run(),
                kubelet.run(),
                *([service_proxy(settings, admin)] if settings.primary and deps.network else []),
            )
        finally:
            await kubelet.close()
            with contextlib.suppress(Exception):
                await web_runner.cleanup()
            await kube.close()
            await admin.close()
