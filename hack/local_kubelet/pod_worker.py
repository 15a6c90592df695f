"""One pod's life on this node: sandbox, init containers, containers, status, deletion."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from local_kubelet import farm, images, podspec, projection, runtime, security, status
from local_kubelet.config import Settings
from local_kubelet.container import ContainerRunner, RunnerConfig
from local_kubelet.ips import IpPool
from local_kubelet.kube import STRATEGIC, Kube, KubeError
from local_kubelet.model import Container, Pod
from local_kubelet.netns import NetnsError, PodNetwork
from local_kubelet.volumes import PodVolumes, VolumeError, VolumeManager, object_path

log = logging.getLogger(__name__)

STATUS_DEBOUNCE_SECONDS = 0.05
TERMINAL = ("Succeeded", "Failed")


@dataclass(frozen=True)
class Deps:
    """The kubelet-wide services a pod worker uses."""

    settings: Settings
    kube: Kube
    volumes: VolumeManager
    ips: IpPool
    table: images.ImageTable
    session: aiohttp.ClientSession
    which: Callable[[str], str | None]
    base_env: dict[str, str]
    # Container processes of an earlier kubelet run, by `<pod uid>_<container>`.
    leftovers: dict[str, runtime.Adopted] = field(default_factory=dict)
    # Set under POD_NETWORK=netns: each pod gets its own network namespace.
    network: PodNetwork | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class PodWorker:
    """Drives one pod to its spec; `update` feeds it the latest object from the watch."""

    def __init__(self, pod: Pod, deps: Deps) -> None:
        self.pod = pod
        self._deps = deps
        self._changed = asyncio.Event()
        self._dirty = asyncio.Event()
        self._gone = False
        self.runners: list[ContainerRunner] = []
        self.init_runners: list[ContainerRunner] = []
        self._runner_tasks: list[asyncio.Task[None]] = []
        self._sandbox_ready = False
        # Set once this worker starts the pod: only then is the status ours to
        # write (a terminal pod seen after a kubelet restart keeps its status).
        self._owns_status = False
        # A pod whose containers an earlier kubelet run left running: its status
        # stays as it is until runners hold the adopted processes.
        self._resuming = any(
            f"{pod.metadata.uid}_{c.name}" in deps.leftovers for c in pod.spec.containers
        )
        self._initialized = not pod.spec.init_containers
        self._sandbox_message = ""
        # A restarted kubelet keeps the start time the pod already reports.
        reported = pod.status.start_time
        self._start_time = datetime.fromisoformat(reported) if reported else _now()
        self._last_status: dict[str, Any] | None = None
        self._volumes = PodVolumes(root=deps.volumes.pod_dir(pod.metadata.uid))
        host_network = pod.spec.host_network
        # Under netns the address comes with the namespace, made when the pod starts.
        self._network = None if host_network else deps.network
        self.pod_ip = (
            deps.settings.host_ip
            if host_network
            else pod.status.pod_ip or ""
            if self._network
            else deps.ips.allocate(pod.metadata.uid, prefer=pod.status.pod_ip)
        )

    @property
    def uid(self) -> str:
        return self.pod.metadata.uid

    @property
    def log_dir(self) -> Path:
        return self._deps.volumes.pod_dir(self.uid) / "logs"

    def update(self, pod: Pod) -> None:
        self.pod = pod
        self._changed.set()
        self._dirty.set()

    def refresh_volumes(self) -> None:
        """A Secret or ConfigMap the pod shows changed."""
        self._changed.set()

    def gone(self) -> None:
        """The pod object vanished (force delete): stop at once, skip the API."""
        self._gone = True
        self._changed.set()

    def _notify(self) -> None:
        self._dirty.set()

    # --- the plan of each container attempt ------------------------------------

    def _context(self) -> podspec.PodContext:
        settings = self._deps.settings
        # A pod in its own network namespace cannot see the host's loopback: it dials the
        # `kubernetes` Service, which the Service rules (proxy.py) send to the API server.
        api_host, api_port = (
            (str(settings.service_cidr.network_address + 1), 443)
            if self._network
            else (
                self._deps.kube.server.split("//", 1)[1].rsplit(":", 1)[0],
                int(self._deps.kube.server.rsplit(":", 1)[1]),
            )
        )
        return podspec.PodContext(
            pod_ip=self.pod_ip,
            host_ip=settings.host_ip,
            node_name=settings.node_name,
            api_host=api_host,
            api_port=api_port,
            base_env=self._deps.base_env,
            node_cpu=self._deps.settings.cpu_capacity,
        )

    async def _env_objects(
        self, container: Container
    ) -> dict[tuple[str, str], dict[str, str] | None]:
        refs: set[tuple[str, str]] = set()
        for var in container.env:
            source = var.value_from
            if source and source.secret_key_ref:
                refs.add(("secret", source.secret_key_ref.name))
            if source and source.config_map_key_ref:
                refs.add(("configmap", source.config_map_key_ref.name))
        for env_from in container.env_from:
            if env_from.secret_ref:
                refs.add(("secret", env_from.secret_ref.name))
            if env_from.config_map_ref:
                refs.add(("configmap", env_from.config_map_ref.name))
        found: dict[tuple[str, str], dict[str, str] | None] = {}
        for kind, name in refs:
            obj = await self._deps.kube.get(object_path(self.pod.metadata.namespace, kind, name))
            if obj is None:
                found[(kind, name)] = None
                continue
            raw = (
                projection.secret_data(obj) if kind == "secret" else projection.configmap_data(obj)
            )
            found[(kind, name)] = {k: v.decode(errors="replace") for k, v in raw.items()}
        return found

    def _runner(self, container: Container, restart_policy: str) -> ContainerRunner:
        settings = self._deps.settings

        async def plan() -> podspec.ProcessPlan:
            return podspec.plan(
                self.pod,
                container,
                self._context(),
                table=self._deps.table,
                root=settings.root,
                which=self._deps.which,
                objects=await self._env_objects(container),
                volume_dirs=self._volumes.dirs,
            )

        config = RunnerConfig(
            pod_key=self.pod.key,
            restart_policy=restart_policy,
            pod_ip=self.pod_ip,
            log_dir=self.log_dir,
            pid_file=settings.pid_dir / f"{self.uid}_{container.name}.pid",
            initial_backoff=settings.initial_backoff,
            max_backoff=settings.max_backoff,
            grace_seconds=float(self.pod.spec.termination_grace_period_seconds),
            session=self._deps.session,
            nice=settings.container_nice,
            farm_events=settings.farm_events_file
            if settings.simulate_nodes or farm.simulated(self.pod.metadata.annotations)
            else None,
            netns=self._network.path(self.uid) if self._network else None,
        )
        runner = ContainerRunner(container, config, plan=plan, notify=self._notify)
        runner.restart_count = restarts_before(self.pod, container.name)
        leftover = self._deps.leftovers.pop(f"{self.uid}_{container.name}", None)
        if leftover is not None:
            started_at, restart_count, ready = adoption(
                self.pod, container.name, leftover.started_at, runner.restart_count
            )
            runner.adopt(leftover, started_at=started_at, restart_count=restart_count, ready=ready)
        return runner

    def _kill_leftovers(self) -> None:
        """End what an earlier kubelet run left of this pod and nobody adopted."""
        for key in [k for k in self._deps.leftovers if k.startswith(f"{self.uid}_")]:
            self._deps.leftovers.pop(key).signal(signal.SIGKILL)

    # --- the life cycle ------------------------------------------------------------

    def _deleting(self) -> bool:
        return self._gone or self.pod.metadata.deletion_timestamp is not None

    async def _wait_change(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), seconds)
        self._changed.clear()

    async def run(self) -> None:
        """Run the pod until it is deleted; then delete its object for good."""
        status_task = asyncio.create_task(self._status_loop())
        shut_down = False
        try:
            if self.pod.status.phase not in TERMINAL:
                await self._run_pod()
            while not self._deleting():
                await self._wait_change(self._deps.settings.resync_seconds)
                if self._owns_status and not all(r.done for r in self.runners):
                    await self._sync_volumes()
            await self._shut_down()
            shut_down = True
        finally:
            tasks = [status_task, *self._runner_tasks]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._deps.ips.release(self.uid)
            # Only a pod that ended loses its namespace: a kubelet that stops (cancelling
            # this worker) leaves its containers running in it, for the next run to adopt.
            if self._network and shut_down:
                await self._network.detach(self.uid)

    async def _sync_volumes(self) -> None:
        try:
            await self._deps.volumes.sync(self.pod, self._context(), self._volumes)
        except (VolumeError, KubeError) as exc:
            log.warning("%s: volumes: %s", self.pod.key, exc)

    async def _run_pod(self) -> None:
        if self._deleting():
            return
        self._owns_status = True
        self._dirty.set()
        if not self._resuming and not self._deps.settings.simulate_nodes:
            # In the background: a slow API server must not hold the pod back.
            self._runner_tasks.append(asyncio.create_task(self._warn_unenforced()))
        while self._network and not self._deleting():
            try:
                self.pod_ip = await self._network.attach(self.uid)
                break
            except NetnsError as exc:
                self._sandbox_message = f"pod network: {exc}"
                self._notify()
                await self._wait_change(2.0)
        while not self._deleting():
            try:
                await self._deps.volumes.sync(self.pod, self._context(), self._volumes)
                break
            except (VolumeError, KubeError) as exc:
                self._sandbox_message = str(exc)
                self._notify()
                await self._wait_change(2.0)
        if self._deleting():
            return
        self._sandbox_ready = True
        self._notify()
        policy = self.pod.spec.restart_policy
        init_policy = "Never" if policy == "Never" else "OnFailure"
        # After a kubelet restart, a pod that was past its init containers keeps running.
        conditions = {c.type: c.status for c in self.pod.status.conditions}
        resumed = conditions.get("Initialized") == "True" and any(
            f"{self.uid}_{c.name}" in self._deps.leftovers for c in self.pod.spec.containers
        )
        for spec in [] if resumed else self.pod.spec.init_containers:
            runner = self._runner(spec, init_policy)
            self.init_runners.append(runner)
            task = asyncio.create_task(runner.run())
            self._runner_tasks.append(task)
            while not task.done():
                await asyncio.wait({task}, timeout=1.0)
                if self._deleting():
                    await runner.stop(0)
                    await task
                    return
            ended = runner.state
            if not (isinstance(ended, status.Terminated) and ended.exit_code == 0):
                self._fail_all("Init:Error")
                return
        self._initialized = True
        self.runners = [self._runner(spec, policy) for spec in self.pod.spec.containers]
        self._kill_leftovers()
        tasks = [asyncio.create_task(r.run()) for r in self.runners]
        self._runner_tasks.extend(tasks)
        while not self._deleting() and not all(t.done() for t in tasks):
            await self._wait_change(self._deps.settings.resync_seconds)
            await self._sync_volumes()

    async def _warn_unenforced(self) -> None:
        """A Warning Event on the pod naming the security settings ours ignores (a real
        kubelet enforces them), so `kubectl describe pod` says so; once per pod start."""
        message = security.unenforced(self.pod)
        if not message:
            return
        meta, node = self.pod.metadata, self._deps.settings.node_name
        stamp = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.name}.", "namespace": meta.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": meta.namespace,
                "name": meta.name,
                "uid": meta.uid,
            },
            "type": "Warning",
            "reason": security.REASON,
            "message": message,
            "source": {"component": "kubelet", "host": node},
            "reportingComponent": "kubelet",
            "reportingInstance": node,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self._deps.kube.request(
                "POST", f"/api/v1/namespaces/{meta.namespace}/events", body=event
            )
        except KubeError as exc:  # an Event is advice: the pod starts regardless
            log.warning("%s: event %s: %s", self.pod.key, security.REASON, exc)

    def _fail_all(self, reason: str) -> None:
        """An init container failed for good: the app containers never run."""
        self.runners = [self._runner(spec, "Never") for spec in self.pod.spec.containers]
        for runner in self.runners:
            runner.state = status.Waiting(reason)
            runner.done = True
        self._notify()

    async def _shut_down(self) -> None:
        grace = float(
            0
            if self._gone
            else self.pod.metadata.deletion_grace_period_seconds
            if self.pod.metadata.deletion_grace_period_seconds is not None
            else self.pod.spec.termination_grace_period_seconds
        )
        log.info("%s: stopping (grace %gs)", self.pod.key, grace)
        await asyncio.gather(*(r.stop(grace) for r in [*self.init_runners, *self.runners]))
        self._kill_leftovers()
        self._deps.volumes.remove(self.uid)
        if self._gone:
            return
        if self._owns_status:
            await self._patch_status()
        meta = self.pod.metadata
        path = f"/api/v1/namespaces/{meta.namespace}/pods/{meta.name}"
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta.uid}}
        for _ in range(5):
            try:
                await self._deps.kube.request("DELETE", path, body=body)
                break
            except KubeError as exc:
                if exc.not_found or exc.status == 409:
                    break
                log.warning("%s: final delete: %s", self.pod.key, exc)
                await asyncio.sleep(1)
        shutil.rmtree(self._deps.volumes.pod_dir(self.uid), ignore_errors=True)

    # --- status ----------------------------------------------------------------------

    def build_status(self) -> dict[str, Any]:
        views = [r.view() for r in self.runners] or [
            status.ContainerView(
                name=c.name,
                image=c.image,
                state=status.Waiting("ContainerCreating", self._sandbox_message)
                if self._initialized
                else status.Waiting("PodInitializing"),
            )
            for c in self.pod.spec.containers
        ]
        return status.pod_status(
            self.pod,
            views,
            pod_ip=self.pod_ip if self._sandbox_ready else None,
            host_ip=self._deps.settings.host_ip,
            start_time=self._start_time,
            sandbox_ready=self._sandbox_ready,
            initialized=self._initialized,
            now=_now(),
            init_views=[r.view() for r in self.init_runners],
            written=self._last_status,
        )

    async def _patch_status(self) -> bool:
        """Send the status if it changed; False when the API refused it (retry later)."""
        body = self.build_status()
        if body == self._last_status:
            return True
        meta = self.pod.metadata
        path = f"/api/v1/namespaces/{meta.namespace}/pods/{meta.name}/status"
        try:
            await self._deps.kube.request(
                "PATCH", path, body={"status": body}, content_type=STRATEGIC
            )
            self._last_status = body
        except KubeError as exc:
            if exc.not_found:
                return True
            log.warning("%s: status patch: %s", self.pod.key, exc)
            return False
        return True

    async def _status_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(STATUS_DEBOUNCE_SECONDS)
            self._dirty.clear()
            if self._resuming and not self.runners:
                continue
            if self._owns_status and not self._gone and not await self._patch_status():
                await asyncio.sleep(1.0)
                self._dirty.set()


def restarts_before(pod: Pod, container: str) -> int:
    """Where the restart count goes on when a restarted kubelet restarts a container.

    The pod's status still shows the earlier kubelet's container; if it ever
    ran, starting it again is one more restart, as a user reading the count expects.
    """
    for entry in pod.status.container_statuses:
        if entry.get("name") != container:
            continue
        state = entry.get("state") or {}
        ran = "running" in state or "terminated" in state or entry.get("lastState")
        count = int(entry.get("restartCount", 0))
        return count + 1 if ran else count
    return 0


def adoption(
    pod: Pod, container: str, process_started: Callable[[], datetime], restarts: int
) -> tuple[datetime, int, bool]:
    """(startedAt, restartCount, ready) of a leftover container process being adopted.

    The process is ours (its pid file's start time matched) and alive, so it is the
    container even when the earlier run stopped before the pod's status said it was
    running: then it starts from its own start time, unready until probed."""
    return running_since(pod, container) or (process_started(), restarts, False)


def running_since(pod: Pod, container: str) -> tuple[datetime, int, bool] | None:
    """(startedAt, restartCount, ready) of a container the pod's status shows running."""
    for entry in pod.status.container_statuses:
        started = (entry.get("state") or {}).get("running", {}).get("startedAt")
        if entry.get("name") == container and started:
            moment = datetime.fromisoformat(started)
            return moment, int(entry.get("restartCount", 0)), bool(entry.get("ready"))
    return None
