"""hack/cluster.sh's pod range: derived from the cluster directory's path in every case, kept
across runs, moved when a running cluster holds it, refused when set by hand and held. Runs
only the claim (no cluster is started)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def claim(
    cluster: Path, cache: Path, pod_cidr: str = "", network: str = "loopback"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "POD_CIDR"}
    env |= {"CLUSTER_DIR": str(cluster), "MARKETPLACE_CACHE": str(cache), "POD_NETWORK": network}
    if pod_cidr:
        env["POD_CIDR"] = pod_cidr
    return subprocess.run(
        ["bash", "-c", 'source hack/cluster.sh && claim_pod_cidr && echo "$POD_CIDR"'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def claimed(cluster: Path, cache: Path, pod_cidr: str = "", network: str = "loopback") -> str:
    done = claim(cluster, cache, pod_cidr, network)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def running(cluster: Path) -> None:
    """Record this test process as one of `cluster`'s, as cluster.sh's `start` does."""
    (cluster / "pids").mkdir(parents=True, exist_ok=True)
    stat = Path("/proc/self/stat").read_text()
    start_time = stat.rpartition(")")[2].split()[19]
    (cluster / "pids" / "etcd.pid").write_text(f"{os.getpid()} {start_time}\n")


def routed_here(second: int) -> bool:
    """10.`second`.0.0/16 overlaps a route of this machine (a CI host's own network, a bridge
    another cluster left): cluster.sh skips such a range, so the expectation must too."""
    pods = ipaddress.ip_network(f"10.{second}.0.0/16")
    routes = subprocess.run(
        ["ip", "-4", "-o", "route", "show"], capture_output=True, text=True, check=True
    ).stdout
    nets = [line.split()[0] for line in routes.splitlines() if line.split()]
    return any(
        pods.overlaps(ipaddress.ip_network(net, strict=False)) for net in nets if net != "default"
    )


def next_netns_range(after: int) -> str:
    """The first 127.N.0.0/16 from `after` whose 10.N twin is neither the Service range
    (N 96..111), the real Node's (N 244) nor routed on this machine."""
    second = after
    while not 16 <= second <= 254 or 96 <= second <= 111 or second == 244 or routed_here(second):
        second = 16 + (second - 16 + 1) % 239
    return f"127.{second}.0.0/16"


def registered(cache: Path, cidr: str) -> str:
    return (cache / "pod-cidrs" / cidr.replace("/", "_")).read_text().strip()


def test_each_checkouts_default_cluster_derives_its_own_range(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ranges = set()
    for i in range(8):  # eight checkouts, each cluster up beside the others
        cluster = tmp_path / f"checkout{i}" / ".cluster"
        ranges.add(claimed(cluster, cache))
        running(cluster)
    assert len(ranges) == 8  # a derived range a running cluster holds moves to the next
    for cidr in ranges:
        second = int(cidr.split(".")[1])
        assert 16 <= second <= 254, cidr  # never 127.0 (hosts, tests) or 127.1 (old default)
        assert cidr.endswith(".0.0/16"), cidr


def test_a_range_is_kept_and_moves_only_when_a_running_cluster_holds_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, other = tmp_path / "first", tmp_path / "other"
    mine = claimed(first, cache)
    assert claimed(first, cache) == mine  # stable across runs
    assert (first / "pod-cidr").read_text().strip() == mine
    # Another cluster takes the range while the first is stopped (its claim is stale).
    assert claimed(other, cache, mine) == mine
    assert registered(cache, mine) == str(other)
    running(other)
    moved = claimed(first, cache)
    assert moved != mine
    assert registered(cache, moved) == str(first)


def test_a_range_set_by_hand_that_a_running_cluster_holds_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    holder, late = tmp_path / "holder", tmp_path / "late"
    assert claimed(holder, cache, "127.77.0.0/16") == "127.77.0.0/16"
    running(holder)
    refused = claim(late, cache, "127.77.0.0/16")
    assert refused.returncode != 0
    assert f"POD_CIDR 127.77.0.0/16 is in use by the running cluster in {holder}" in refused.stderr
    assert not (late / "pod-cidr").exists()


def test_a_netns_range_never_overlaps_the_service_range_or_the_real_node(tmp_path: Path) -> None:
    # Under netns 127.N.0.0/16 becomes 10.N.0.0/16: N in 96..111 would be inside the
    # Service range 10.96.0.0/12, N = 244 the real-kubelet Node's 10.244.x.0/24 bridges.
    cache = tmp_path / "cache"
    for recorded, first_candidate in (("127.244.0.0/16", 245), ("127.96.0.0/16", 112)):
        cluster = tmp_path / recorded.split("/")[0]
        cluster.mkdir()
        (cluster / "pod-cidr").write_text(recorded + "\n")
        moved = claimed(cluster, cache, network="netns")
        assert moved == next_netns_range(first_candidate), moved
        # A loopback cluster keeps it: 127.244 and 127.96 clash with nothing.
        (cluster / "pod-cidr").write_text(recorded + "\n")
        assert claimed(cluster, cache) == recorded
    refused = claim(tmp_path / "by-hand", cache, "10.100.0.0/16", network="netns")
    assert refused.returncode != 0
    assert (
        "POD_CIDR 10.100.0.0/16 cannot be a netns pod range: "
        "10.100.0.0/16 overlaps the Service range 10.96.0.0/12" in refused.stderr
    )


def test_a_range_unusable_for_the_pod_network_is_refused_at_start(tmp_path: Path) -> None:
    # Before, a loopback cluster started with such a range and every pod stayed
    # ContainerCreating without an error anywhere.
    cache = tmp_path / "cache"
    for network, cidr, why in (
        ("loopback", "10.1.0.0/16", "it is outside 127.0.0.0/8"),
        ("loopback", "127.0.0.0/16", "it holds 127.0.0.1"),
        ("loopback", "127.30.0.0/28", "it is smaller than a /24"),
        ("loopback", "127.30.1.0/16", "it is not an IPv4 network"),
        ("netns", "8.8.0.0/16", "it is not inside a private range"),
        ("netns", "172.16.0.0/27", "it is smaller than a /24"),
    ):
        cluster = tmp_path / f"{network}-{cidr.replace('/', '_')}"
        refused = claim(cluster, cache, cidr, network=network)
        assert refused.returncode != 0, (network, cidr)
        prefix = f"[cluster] ERROR: POD_CIDR {cidr} cannot be a {network} pod range: {why}"
        assert refused.stderr.count("\n") == 1, refused.stderr  # one line
        assert refused.stderr.startswith(prefix), refused.stderr
        assert not (cluster / "pod-cidr").exists()
    # A private range is a netns cluster's to take.
    assert claimed(tmp_path / "private", cache, "192.168.0.0/16", network="netns") == (
        "192.168.0.0/16"
    )
    # A range recorded by a netns cluster that starts again in loopback: derived afresh.
    cluster = tmp_path / "switched"
    cluster.mkdir()
    (cluster / "pod-cidr").write_text("192.168.0.0/16\n")
    assert claimed(cluster, cache).startswith("127.")
