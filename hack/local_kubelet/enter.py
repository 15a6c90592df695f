"""Inside a container's fresh mount namespace: bind its volumes, then exec its command.

Run as `unshare --mount --propagation private -- python -I -m local_kubelet.enter SPEC`
where SPEC is JSON {"mounts": [[source, target, read_only], ...], "keep": [path, ...],
"workdir", "argv", "nice"}. The process keeps its PID through both execs, so the kubelet
signals the container itself.

Every source and kept path is opened (O_PATH) before the first mount and bound
from its /proc/self/fd link, so a mount over a parent directory (an emptyDir at
/tmp) can hide neither a later mount's source nor the checkout, which is bound
back inside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path


def _mountpoint(source: Path, target: Path) -> None:
    """Create an empty mountpoint of the source's kind if the target is missing."""
    if target.exists() or target.is_symlink():
        return
    if source.is_dir():
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()


def _handle(path: str) -> str:
    """A path to `path` that stays valid whatever is mounted over it later."""
    return f"/proc/{os.getpid()}/fd/{os.open(path, os.O_PATH)}"


def _bind(source: str, target: Path) -> None:
    # --no-canonicalize: resolving the /proc fd link to a path name would find
    # whatever is mounted at that name now, not the directory the fd holds.
    subprocess.run(["mount", "--no-canonicalize", "--bind", source, str(target)], check=True)


def _be_nice(increment: int) -> None:
    """Lower our CPU priority, and our session's: with autogroup scheduling (the kernel
    default) nice values count only inside a session, and every container has its own."""
    if increment <= 0:
        return
    os.nice(increment)
    autogroup = Path("/proc/self/autogroup")
    if os.getsid(0) == os.getpid() and autogroup.exists():  # our own session only
        with contextlib.suppress(OSError):  # another session's group, or no permission
            autogroup.write_text(str(increment))


def main() -> None:
    spec = json.loads(sys.argv[1])
    _be_nice(int(spec.get("nice", 0)))
    mounts = [(_handle(src), Path(dst), ro) for src, dst, ro in spec["mounts"]]
    keep = [(Path(k), _handle(k)) for k in spec.get("keep", []) if os.path.exists(k)]
    for source, target, read_only in mounts:
        _mountpoint(Path(source), target)
        _bind(source, target)
        for kept, handle in keep:
            if kept.is_relative_to(target) and kept != target:
                kept.mkdir(parents=True, exist_ok=True)
                _bind(handle, kept)
        if read_only:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
    if spec.get("workdir"):
        Path(spec["workdir"]).mkdir(parents=True, exist_ok=True)
        os.chdir(spec["workdir"])
    argv = spec["argv"]
    try:
        os.execv(argv[0], argv)  # noqa: S606 - exec is the point: keep the PID
    except OSError as exc:
        print(f"local-kubelet: cannot execute {argv[0]}: {exc}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main()
