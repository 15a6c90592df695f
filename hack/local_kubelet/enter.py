"""Inside a container's fresh mount namespace: bind its volumes, then exec its command.

Run as `unshare --mount --propagation private -- python -I -m local_kubelet.enter SPEC`
where SPEC is JSON {"mounts": [[source, target, read_only], ...], "workdir", "argv"}.
The process keeps its PID through both execs, so the kubelet signals the
container itself.
"""

from __future__ import annotations

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


def main() -> None:
    spec = json.loads(sys.argv[1])
    for source, target, read_only in spec["mounts"]:
        _mountpoint(Path(source), Path(target))
        subprocess.run(["mount", "--bind", source, target], check=True)
        if read_only:
            subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)
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
