"""A container whose process cannot start is reported, not lost (container.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from local_kubelet import runtime
from local_kubelet.container import ContainerRunner, RunnerConfig
from local_kubelet.model import Container
from local_kubelet.podspec import ProcessPlan
from local_kubelet.status import Waiting


async def test_a_process_that_cannot_start_shows_run_container_error_and_is_retried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    launches: list[ProcessPlan] = []

    async def launch(plan: ProcessPlan, **_: Any) -> runtime.Handle:
        launches.append(plan)
        raise OSError(99, "Cannot assign requested address")

    monkeypatch.setattr(runtime, "launch", launch)  # container.py calls runtime.launch

    async def plan() -> ProcessPlan:
        return ProcessPlan(container="c", argv=("/bin/true",), env={})

    config = RunnerConfig(
        pod_key="ns/p", restart_policy="Always", pod_ip="127.0.0.9", log_dir=tmp_path,
        pid_file=tmp_path / "pids", initial_backoff=timedelta(seconds=0.01),
        max_backoff=timedelta(seconds=0.01), grace_seconds=1.0,
        session=cast("aiohttp.ClientSession", None),
    )  # fmt: skip
    runner = ContainerRunner(Container(name="c"), config, plan=plan, notify=lambda: None)
    task = asyncio.create_task(runner.run())
    try:
        for _ in range(300):
            if len(launches) >= 2:
                break
            await asyncio.sleep(0.01)
        assert not task.done(), task  # the runner lives on: it did not die in silence
        assert len(launches) >= 2  # and it tries again
        assert isinstance(runner.state, Waiting)
        assert runner.state.reason == "RunContainerError"
        assert "Cannot assign requested address" in runner.state.message
    finally:
        await runner.stop(0)
        await asyncio.wait_for(task, 5)
