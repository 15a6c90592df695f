"""Run one container attempt as a local process in its own mount namespace and session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from local_kubelet.podspec import ProcessPlan


def start_time(pid: int) -> str | None:
    """The kernel's start time of a process, to tell it from a later one with the same PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def kill_group(pid: int, sig: int) -> None:
    """Signal the container's whole process group; it may already be gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@dataclass
class Process:
    """A started container process; `pid` is also its process-group id."""

    proc: asyncio.subprocess.Process
    pid_file: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait(self) -> int:
        """Wait for exit; the exit code, or 128+signal for a signalled process."""
        code = await self.proc.wait()
        # Whatever the main process left behind in its group dies with it,
        # as a runtime kills a container's cgroup.
        kill_group(self.pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return 128 - code if code < 0 else code

    def signal(self, sig: int) -> None:
        if self.proc.returncode is None:
            kill_group(self.pid, sig)


async def launch(plan: ProcessPlan, *, log_file: Path, pid_file: Path) -> Process:
    """Start the container: unshare a mount namespace, bind mounts, exec the command."""
    spec = {
        "mounts": [[m.source, m.target, m.read_only] for m in plan.mounts],
        "workdir": plan.working_dir,
        "argv": list(plan.argv),
    }
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            shutil.which("unshare") or "/usr/bin/unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            sys.executable,
            "-I",
            "-m",
            "local_kubelet.enter",
            json.dumps(spec),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=dict(plan.env),
            start_new_session=True,
        )
    record_pid(pid_file, proc.pid)
    return Process(proc, pid_file)


def record_pid(pid_file: Path, pid: int) -> None:
    """Write `PID STARTTIME` so that cluster.sh can stop the process group after us."""
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{pid} {start_time(pid) or ''}\n")


def kill_leftovers(pid_dir: Path) -> int:
    """SIGKILL container processes recorded by an earlier kubelet run; how many."""
    killed = 0
    for pid_file in pid_dir.glob("*.pid"):
        with contextlib.suppress(ValueError, OSError):
            pid_text, _, recorded = pid_file.read_text().strip().partition(" ")
            pid = int(pid_text)
            current = start_time(pid)
            if current is None or current == recorded:
                kill_group(pid, signal.SIGKILL)
                killed += 1
        pid_file.unlink(missing_ok=True)
    return killed
