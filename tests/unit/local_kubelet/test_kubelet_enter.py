"""`local_kubelet.enter` in a real private mount namespace (needs root and unshare)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


def run_enter(spec: dict[str, object]) -> subprocess.CompletedProcess[str]:
    unshare = shutil.which("unshare")
    assert unshare, "util-linux unshare is required"
    enter = [sys.executable, "-m", "local_kubelet.enter", json.dumps(spec)]
    return subprocess.run(
        [unshare, "--mount", "--propagation", "private", "--", *enter],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_checkout_and_later_sources_survive_a_mount_over_their_parent(tmp_path: Path) -> None:
    parent = tmp_path / "tmp"
    checkout = parent / "ci" / "repo"
    checkout.mkdir(parents=True)
    (checkout / "code.txt").write_text("from the checkout\n")
    config = parent / "state" / "config"  # a later mount's source, hidden by the first mount
    config.mkdir(parents=True)
    (config / "key").write_text("from a config volume\n")
    empty_dir = tmp_path / "emptydir"
    empty_dir.mkdir()

    result = run_enter(
        {
            "mounts": [
                [str(empty_dir), str(parent), False],
                [str(config), str(parent / "etc-app"), True],
            ],
            "keep": [str(checkout)],
            "workdir": None,
            "argv": [
                "/bin/sh",
                "-c",
                f"cat {checkout}/code.txt {parent}/etc-app/key; ls {parent}; "
                f"touch {parent}/etc-app/x 2>/dev/null && echo writable || echo read-only",
            ],
        }
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["from the checkout", "from a config volume"]
    assert "state" not in lines[2:]  # the parent shows the emptyDir, not the host directory
    assert lines[-1] == "read-only"
    # On the host nothing was mounted: the checkout and the state are where they were.
    assert (checkout / "code.txt").read_text() == "from the checkout\n"
    assert sorted(p.name for p in parent.iterdir()) == ["ci", "state"]
