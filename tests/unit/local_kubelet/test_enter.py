"""`local_kubelet.enter` in a real private mount namespace (needs root and unshare)."""

from __future__ import annotations

import json
import os
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


def test_a_container_in_its_own_session_runs_nicer_with_its_autogroup() -> None:
    unshare = shutil.which("unshare")
    assert unshare, "util-linux unshare is required"
    spec = {
        "mounts": [],
        "workdir": None,
        "nice": 7,
        "argv": ["/bin/sh", "-c", "cut -d' ' -f19 /proc/self/stat; cat /proc/self/autogroup"],
    }
    enter = [sys.executable, "-m", "local_kubelet.enter", json.dumps(spec)]
    before = (
        Path("/proc/self/autogroup").read_text() if Path("/proc/self/autogroup").exists() else ""
    )
    result = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "--", *enter],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        start_new_session=True,  # as the kubelet starts containers
    )
    assert result.returncode == 0, result.stderr
    nice, *autogroup = result.stdout.splitlines()
    assert int(nice) == os.nice(0) + 7
    if autogroup:  # kernels without autogroup scheduling have no such file
        assert autogroup[0].endswith("nice 7")
    # The caller's session keeps its priority.
    if before:
        assert Path("/proc/self/autogroup").read_text() == before


def test_without_a_session_of_its_own_only_the_process_is_niced() -> None:
    before = (
        Path("/proc/self/autogroup").read_text() if Path("/proc/self/autogroup").exists() else ""
    )
    result = run_enter(
        {
            "mounts": [],
            "workdir": None,
            "nice": 3,
            "argv": ["/bin/sh", "-c", "cut -d' ' -f19 /proc/self/stat"],
        }
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) == os.nice(0) + 3
    if before:
        assert Path("/proc/self/autogroup").read_text() == before
