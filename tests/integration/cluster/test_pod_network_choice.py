"""hack/cluster.sh's pod network: netns by default; on a machine that cannot make a network
namespace, loopback with the reason in one line and on record (the pod-network test set's
skip names it), tried again at the next start; netns set by hand fails there instead.
Runs only the choice (no cluster is started); the machine's lack of a network namespace is
an `ip` on PATH that refuses `ip netns add` as an unprivileged container does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
REFUSAL = "mount --make-shared /run/netns failed: Operation not permitted"


def choose(
    cluster: Path, bin_dir: Path | None = None, **env_vars: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("POD_NETWORK", "SIMULATE_NODES")}
    env |= {"CLUSTER_DIR": str(cluster), **env_vars}
    if bin_dir:
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return subprocess.run(
        ["bash", "-c", 'source hack/cluster.sh && choose_pod_network && echo "$POD_NETWORK"'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def no_netns(tmp_path: Path) -> Path:
    """A directory whose `ip` refuses to make a network namespace and passes the rest on."""
    bin_dir = tmp_path / "no-netns-bin"
    bin_dir.mkdir()
    real_ip = subprocess.run(
        ["bash", "-c", "command -v ip"], capture_output=True, text=True, check=True
    ).stdout.strip()
    ip = bin_dir / "ip"
    ip.write_text(
        "#!/bin/sh\n"
        f'if [ "$1 $2" = "netns add" ]; then echo "{REFUSAL}" >&2; exit 1; fi\n'
        f'exec {real_ip} "$@"\n'
    )
    ip.chmod(0o755)
    return bin_dir


def test_netns_is_the_default_and_leaves_no_fallback_on_record(tmp_path: Path) -> None:
    cluster = tmp_path / "cluster"
    chosen = choose(cluster)
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.strip() == "netns"
    assert not (cluster / "pod-network-fallback").exists()


def test_a_machine_without_network_namespaces_falls_back_in_one_line(tmp_path: Path) -> None:
    cluster, bin_dir = tmp_path / "cluster", no_netns(tmp_path)
    chosen = choose(cluster, bin_dir)
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.strip() == "loopback"
    assert chosen.stderr == (
        "[cluster] POD_NETWORK=loopback: this machine cannot make a network namespace "
        f"({REFUSAL})\n"
    )
    assert (cluster / "pod-network-fallback").read_text().strip() == REFUSAL
    # The loopback it fell back to is recorded like a choice; the next start tries netns
    # again (the machine may allow it now) and says so again if it still cannot.
    (cluster / "pod-network").write_text("loopback\n")
    again = choose(cluster, bin_dir)
    assert (again.stdout.strip(), again.stderr.count("cannot make a network namespace")) == (
        "loopback",
        1,
    )
    allowed = choose(cluster)
    assert allowed.stdout.strip() == "netns", allowed.stderr
    assert not (cluster / "pod-network-fallback").exists()


def test_netns_set_by_hand_fails_where_it_cannot_run_and_the_farm_keeps_loopback(
    tmp_path: Path,
) -> None:
    cluster, bin_dir = tmp_path / "cluster", no_netns(tmp_path)
    refused = choose(cluster, bin_dir, POD_NETWORK="netns")
    assert refused.returncode != 0
    assert refused.stderr == (
        "[cluster] ERROR: POD_NETWORK=netns: this machine cannot make a network namespace: "
        f"{REFUSAL}\n"
    )
    assert not (cluster / "pod-network-fallback").exists()
    # The node farm takes loopback unless told: nothing to try, nothing to say.
    farm = choose(cluster, bin_dir, SIMULATE_NODES="1")
    assert (farm.returncode, farm.stdout.strip(), farm.stderr) == (0, "loopback", "")
