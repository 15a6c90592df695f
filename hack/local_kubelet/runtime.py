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
from datetime import UTC, datetime
from pathlib import Path

from local_kubelet.farm import Virtual
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


@dataclass
class Adopted:
    """A container process started by an earlier kubelet run, not our child.

    Its exit status cannot be read (only a parent can), so an exit is
    reported as 137, as kubelets report a container whose status was lost.
    """

    pid: int
    start: str
    pid_file: Path

    def started_at(self) -> datetime:
        return started_at(
            self.start, boot_time=boot_time(), ticks_per_second=os.sysconf("SC_CLK_TCK")
        )

    async def wait(self) -> int:
        """Wait for exit through a pidfd (readable once the process has ended)."""
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            fd = -1
        if fd >= 0:
            try:
                if start_time(self.pid) == self.start:
                    loop = asyncio.get_running_loop()
                    exited: asyncio.Future[None] = loop.create_future()

                    def readable() -> None:
                        if not exited.done():
                            exited.set_result(None)

                    loop.add_reader(fd, readable)
                    try:
                        await exited
                    finally:
                        loop.remove_reader(fd)
            finally:
                os.close(fd)
        kill_group(self.pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return 137

    def signal(self, sig: int) -> None:
        if start_time(self.pid) == self.start:
            kill_group(self.pid, sig)


Handle = Process | Adopted | Virtual


def started_at(start_ticks: str, *, boot_time: float, ticks_per_second: int) -> datetime:
    """When a process started, from its /proc start time (clock ticks since boot) (pure)."""
    return datetime.fromtimestamp(boot_time + int(start_ticks) / ticks_per_second, UTC)


def boot_time() -> float:
    """The machine's boot time (seconds since the epoch), as /proc/stat gives it."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def recorded(pid_dir: Path) -> dict[str, Adopted]:
    """Live container processes of an earlier run, by pid-file stem `<pod uid>_<container>`."""
    found: dict[str, Adopted] = {}
    for pid_file in pid_dir.glob("*.pid"):
        with contextlib.suppress(ValueError, OSError):
            pid_text, _, start = pid_file.read_text().strip().partition(" ")
            pid = int(pid_text)
            if start and start_time(pid) == start:
                found[pid_file.stem] = Adopted(pid, start, pid_file)
                continue
            # Gone (or the PID was reused): only the rest of its group may remain.
            if start_time(pid) is None:
                kill_group(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
    return found


async def launch(
    plan: ProcessPlan, *, log_file: Path, pid_file: Path, nice: int = 0, netns: Path | None = None
) -> Process:
    """Start the container: enter the pod's network namespace if it has one, unshare a
    mount namespace, bind mounts, exec the command."""
    enter_net = [shutil.which("nsenter") or "/usr/bin/nsenter", f"--net={netns}"] if netns else []
    spec = {
        "nice": nice,
        "mounts": [[m.source, m.target, m.read_only] for m in plan.mounts],
        "workdir": plan.working_dir,
        "keep": list(plan.keep),
        "argv": list(plan.argv),
    }
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            *enter_net,
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
