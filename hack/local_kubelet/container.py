"""One container's life: start, probe, restart with back-off, stop gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from local_kubelet import farm, probes, restarts, runtime
from local_kubelet.images import ImageNotMappedError
from local_kubelet.kube import KubeError
from local_kubelet.model import Container, Probe
from local_kubelet.netns import NetnsError
from local_kubelet.podspec import ContainerConfigError, ProcessPlan
from local_kubelet.status import ContainerView, Running, State, Terminated, Waiting

log = logging.getLogger(__name__)

RESET_BACKOFF_AFTER = timedelta(minutes=10)
UNMAPPED_RETRY_SECONDS = 20.0


@dataclass(frozen=True)
class RunnerConfig:
    """What a runner needs besides its container spec."""

    pod_key: str
    restart_policy: str
    pod_ip: str
    log_dir: Path
    pid_file: Path
    initial_backoff: timedelta
    max_backoff: timedelta
    grace_seconds: float
    session: aiohttp.ClientSession
    nice: int = 0
    # Set: marketplace-node containers are virtual nodes of the farm (`farm`), whose
    # policy applications are recorded in this file (JSON lines).
    farm_events: Path | None = None
    # Set: the pod's own network namespace (POD_NETWORK=netns).
    netns: Path | None = None


def now() -> datetime:
    return datetime.now(UTC)


class ContainerRunner:
    """Runs one container until it is done (per restartPolicy) or stopped.

    `plan` builds the process plan afresh for every attempt (env from Secrets
    may change between restarts); `notify` tells the pod that its status changed.
    """

    def __init__(
        self,
        spec: Container,
        config: RunnerConfig,
        *,
        plan: Callable[[], Awaitable[ProcessPlan]],
        notify: Callable[[], None],
    ) -> None:
        self.spec = spec
        self._config = config
        self._plan = plan
        self._notify = notify
        self.state: State = Waiting("ContainerCreating")
        self.last_state: Terminated | None = None
        self.restart_count = 0
        self.ready = False
        self.started = False
        self.done = False
        self._crashes = 0
        self._process: runtime.Handle | None = None
        self._adopt: tuple[runtime.Adopted, datetime, bool] | None = None
        self._env: dict[str, str] = {}
        self._stopping = asyncio.Event()
        self._exited = asyncio.Event()
        self._liveness_failed = False
        self._liveness_kill: asyncio.Task[None] | None = None

    def view(self) -> ContainerView:
        return ContainerView(
            name=self.spec.name,
            image=self.spec.image,
            state=self.state,
            restart_count=self.restart_count,
            last_state=self.last_state,
            ready=self.ready,
            started=self.started,
            done=self.done,
            pid=self._process.pid if self._process else None,
        )

    def adopt(
        self, process: runtime.Adopted, *, started_at: datetime, restart_count: int, ready: bool
    ) -> None:
        """Take over a process an earlier kubelet run started, instead of a first start.

        Readiness carries over until the probes say otherwise, so a kubelet
        restart does not flap the pod's Ready condition.
        """
        self._adopt = (process, started_at, ready)
        self.restart_count = restart_count
        self.state, self.started, self.ready = Running(started_at), True, ready

    def log_file(self, attempt: int) -> Path:
        return self._config.log_dir / self.spec.name / f"{attempt}.log"

    def _set(self, state: State) -> None:
        self.state = state
        self._notify()

    async def _pause(self, seconds: float) -> None:
        """Sleep, cut short by a stop request."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def run(self) -> None:
        """The restart loop; returns when done or stopped."""
        while not self._stopping.is_set():
            try:
                plan = await self._plan()
            except ImageNotMappedError as exc:
                self._set(Waiting("ImageNotMapped", str(exc)))
                await self._pause(UNMAPPED_RETRY_SECONDS)
                continue
            except (ContainerConfigError, KubeError) as exc:
                self._set(Waiting("CreateContainerConfigError", str(exc)))
                await self._pause(self._config.initial_backoff.total_seconds())
                continue
            try:
                await self._attempt(plan)
            except (OSError, NetnsError) as exc:
                # The process could not start (a real kubelet's RunContainerError): say so
                # in the pod's status and the log and try again after the back-off, rather
                # than end this task in silence with the pod ContainerCreating for ever.
                log.warning("%s/%s could not start: %s", self._config.pod_key, self.spec.name, exc)
                self._set(Waiting("RunContainerError", f"{type(exc).__name__}: {exc}"))
                await self._pause(self._config.initial_backoff.total_seconds())
                continue
            if self.done or self._stopping.is_set():
                break
            delay = restarts.backoff_delay(
                self._crashes, initial=self._config.initial_backoff, cap=self._config.max_backoff
            )
            if delay:  # a first crash restarts at once, with no CrashLoopBackOff
                self._set(
                    Waiting(
                        "CrashLoopBackOff",
                        f"back-off {delay.total_seconds():g}s restarting failed container="
                        f"{self.spec.name} pod={self._config.pod_key}",
                    )
                )
                await self._pause(delay.total_seconds())
            self.restart_count += 1

    async def _attempt(self, plan: ProcessPlan) -> None:
        """Run the process once and record how it ended."""
        self._env = dict(plan.env)
        self._exited.clear()
        self._liveness_failed = False
        if self._adopt is not None:
            self._process, started_at, was_ready = self._adopt
            self._adopt = None
            log.info(
                "%s/%s adopted: pid %d", self._config.pod_key, self.spec.name, self._process.pid
            )
            self.started, self.ready = True, was_ready
        else:
            started_at = now()
            if self._config.farm_events is not None and farm.serves(plan):
                self._process = await farm.launch(
                    plan,
                    self._config.pod_ip,
                    events=self._config.farm_events,
                    netns=self._config.netns,
                )
            else:
                self._process = await runtime.launch(
                    plan,
                    log_file=self.log_file(self.restart_count),
                    pid_file=self._config.pid_file,
                    nice=self._config.nice,
                    netns=self._config.netns,
                )
            log.info(
                "%s/%s started: pid %d", self._config.pod_key, self.spec.name, self._process.pid
            )
            self.started = self.spec.startup_probe is None
            self.ready = self.spec.readiness_probe is None and self.started
        self._set(Running(started_at))
        watchers = asyncio.create_task(self._probe_all())
        try:
            code = await self._process.wait()
        finally:
            watchers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchers
        self._exited.set()
        finished = now()
        self.ready = False
        reason = "Completed" if code == 0 else "Error"
        message = "Liveness probe failed" if self._liveness_failed else ""
        ended = Terminated(
            code,
            reason,
            started_at,
            finished,
            signal=code - 128 if code > 128 else None,
            message=message,
        )
        log.info("%s/%s exited with %d", self._config.pod_key, self.spec.name, code)
        stays = self._stopping.is_set() or not (
            restarts.should_restart(self._config.restart_policy, code) or self._liveness_failed
        )
        if self._liveness_failed and self._config.restart_policy == "Never":
            stays = True
        if stays:
            self.done = True
            self._set(ended)
            return
        self.last_state = ended
        self._crashes = restarts.crashes_after_exit(
            self._crashes, ran_for=finished - started_at, reset_after=RESET_BACKOFF_AFTER
        )
        self._notify()

    async def _probe_all(self) -> None:
        spec = self.spec
        if spec.startup_probe is not None and not self.started:
            await self._probe_loop(spec.startup_probe, self._on_startup, until_verdict=True)
        tasks = []
        if spec.readiness_probe is not None:
            tasks.append(
                self._probe_loop(spec.readiness_probe, self._on_readiness, initial=self.ready)
            )
        if spec.liveness_probe is not None:
            tasks.append(self._probe_loop(spec.liveness_probe, self._on_liveness, initial=True))
        await asyncio.gather(*tasks)

    def _on_startup(self, ok: bool) -> bool:
        if ok:
            self.started = True
            self.ready = self.spec.readiness_probe is None
            self._notify()
        return ok

    def _on_readiness(self, ok: bool) -> bool:
        if ok != self.ready:
            self.ready = ok
            self._notify()
        return False

    def _on_liveness(self, ok: bool) -> bool:
        if not ok and not self._liveness_failed:
            log.info("%s/%s: liveness probe failed", self._config.pod_key, self.spec.name)
            self._liveness_failed = True
            self._liveness_kill = asyncio.get_running_loop().create_task(self._terminate())
            return True
        return False

    async def _probe_loop(
        self,
        probe: Probe,
        on_verdict: Callable[[bool], bool],
        *,
        initial: bool = False,
        until_verdict: bool = False,
    ) -> None:
        """Probe every period; `on_verdict` returns True to end the loop."""
        tracker = probes.ProbeTracker(probe, verdict=initial)
        await asyncio.sleep(probe.initial_delay_seconds)
        while True:
            virtual = self._process if isinstance(self._process, farm.Virtual) else None
            ok = virtual.probe(probe, self.spec.ports) if virtual is not None else None
            if ok is None:
                ok = await probes.run_handler(
                    probe,
                    session=self._config.session,
                    pod_ip=self._config.pod_ip,
                    ports=self.spec.ports,
                    pid=self._process.pid if self._process else None,
                    env=self._env,
                    time_limit=probe.timeout_seconds,
                )
            verdict = tracker.observe(ok)
            if on_verdict(verdict) or (until_verdict and verdict):
                return
            await asyncio.sleep(probe.period_seconds)

    async def _terminate(self, grace: float | None = None) -> None:
        """preStop hook, SIGTERM, wait up to the grace period, SIGKILL."""
        process = self._process
        if process is None or self._exited.is_set():
            return
        budget = self._config.grace_seconds if grace is None else grace
        deadline = asyncio.get_running_loop().time() + budget
        hook = self.spec.lifecycle.pre_stop if self.spec.lifecycle else None
        if hook is not None and budget > 0:
            await probes.run_handler(
                hook,
                session=self._config.session,
                pod_ip=self._config.pod_ip,
                ports=self.spec.ports,
                pid=process.pid,
                env=self._env,
                time_limit=budget,
            )
        process.signal(signal.SIGTERM)
        remaining = max(deadline - asyncio.get_running_loop().time(), 0.0)
        try:
            await asyncio.wait_for(self._exited.wait(), remaining)
        except TimeoutError:
            log.info("%s/%s ignored SIGTERM: SIGKILL", self._config.pod_key, self.spec.name)
            process.signal(signal.SIGKILL)
            await self._exited.wait()

    async def stop(self, grace: float) -> None:
        """Stop for good (pod deletion): no more restarts."""
        self._stopping.set()
        if self._adopt is not None:  # never got to take it over
            self._adopt[0].signal(signal.SIGKILL)
        await self._terminate(grace)
