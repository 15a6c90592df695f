"""hack/cluster.sh's `neighbour_room`: the kernel's one ARP table (all network namespaces
together, capped at gc_thresh3, 1,024 by default) is raised before a netns cluster's pods
start, and never lowered. At 1,024, 50 pods of one fleet (each with an entry per peer)
overflowed it: "neighbor table overflow", packets to a new neighbour dropped for seconds.
Runs the shell function against a stand-in `sysctl` (the real one would change the host).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
KEYS = ("gc_thresh1", "gc_thresh2", "gc_thresh3")


def neighbour_room(tmp_path: Path, have: dict[str, int]) -> dict[str, int]:
    """The thresholds after `neighbour_room`, starting from `have`."""
    state = tmp_path / "sysctl"
    state.mkdir()
    for key, value in have.items():
        (state / key).write_text(str(value))
    fake = tmp_path / "bin" / "sysctl"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"  # `sysctl -n KEY` reads, `sysctl -qw KEY=VALUE` writes
        f'if [ "$1" = -n ]; then cat "{state}/${{2##*.}}"; exit; fi\n'
        'kv="$2"; key="${kv%%=*}"\n'
        f'echo "${{kv#*=}}" > "{state}/${{key##*.}}"\n'
    )
    fake.chmod(0o755)
    env = os.environ | {"PATH": f"{fake.parent}:{os.environ['PATH']}"}
    subprocess.run(
        ["bash", "-c", "source hack/cluster.sh && neighbour_room"],
        cwd=ROOT, env=env, check=True, timeout=60,
    )  # fmt: skip
    return {key: int((state / key).read_text()) for key in KEYS}


def test_the_kernel_defaults_are_raised_past_a_thousand_pods_of_peers(tmp_path: Path) -> None:
    after = neighbour_room(tmp_path, {"gc_thresh1": 128, "gc_thresh2": 512, "gc_thresh3": 1024})
    assert after["gc_thresh3"] >= 64 * 1_000  # 1,000 pods, 64 peers each (the node's table)
    assert after["gc_thresh1"] <= after["gc_thresh2"] <= after["gc_thresh3"]


def test_a_machine_set_higher_keeps_its_setting(tmp_path: Path) -> None:
    mine = {"gc_thresh1": 100_000, "gc_thresh2": 200_000, "gc_thresh3": 400_000}
    assert neighbour_room(tmp_path, mine) == mine
