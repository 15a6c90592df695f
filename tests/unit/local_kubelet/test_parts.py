"""Small pure parts: the pod IP pool, probe thresholds, provisioner decisions, log tails, model."""

from __future__ import annotations

import ipaddress
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from local_kubelet import ips, logserver, probes, provisioner
from local_kubelet.config import Settings
from local_kubelet.model import ContainerPort, Pod, Probe
from local_kubelet.node import LOCAL_KUBELET_LABEL, node_object
from local_kubelet.pod_worker import adoption, restarts_before
from local_kubelet.runtime import Adopted, start_time, started_at


def test_pool_gives_each_owner_one_stable_address_and_reuses_released_ones() -> None:
    pool = ips.IpPool(ipaddress.IPv4Network("127.1.0.0/30"))  # .0-.3: .1 .2 .3 usable
    a = pool.allocate("a")
    assert pool.allocate("a") == a
    b = pool.allocate("b")
    c = pool.allocate("c")
    assert len({a, b, c}) == 3
    assert "127.1.0.0" not in {a, b, c}
    with pytest.raises(ips.PoolExhaustedError):
        pool.allocate("d")
    pool.release("b")
    assert pool.allocate("d") == b


def test_pool_honours_the_address_a_pod_already_reports() -> None:
    pool = ips.IpPool(ipaddress.IPv4Network("127.1.0.0/16"))
    assert pool.allocate("a", prefer="127.1.4.4") == "127.1.4.4"
    assert pool.allocate("b", prefer="127.1.4.4") != "127.1.4.4"
    assert pool.allocate("c", prefer="10.0.0.1") != "10.0.0.1"
    assert pool.allocate("d", prefer="127.1.9.255") != "127.1.9.255"


def test_reserved_addresses_go_to_their_pods_only() -> None:
    pool = ips.IpPool(ipaddress.IPv4Network("127.1.0.0/16"))
    pool.reserve("old", "127.1.0.1")
    assert pool.allocate("new") != "127.1.0.1"
    assert pool.allocate("old", prefer="127.1.0.1") == "127.1.0.1"
    pool.reserve("other", "127.1.0.1")  # taken: ignored
    assert pool.allocate("other") != "127.1.0.1"


def test_probe_verdict_flips_only_at_the_thresholds() -> None:
    tracker = probes.ProbeTracker(Probe(successThreshold=2, failureThreshold=3), verdict=False)
    assert [
        tracker.observe(ok) for ok in (True, True, False, False, True, False, False, False)
    ] == [
        False,
        True,
        True,
        True,
        True,
        True,
        True,
        False,
    ]


def test_named_and_numbered_probe_ports() -> None:
    ports = [ContainerPort(name="http", containerPort=7070)]
    assert probes.resolve_port("http", ports) == 7070
    assert probes.resolve_port(8080, ports) == 8080
    assert probes.resolve_port("9090", ports) == 9090
    with pytest.raises(ValueError, match="grpc"):
        probes.resolve_port("grpc", ports)


def claim(**spec: object) -> dict[str, object]:
    return {
        "metadata": {"name": "data", "namespace": "ns", "uid": "u1"},
        "spec": {
            "storageClassName": "local-dir",
            "resources": {"requests": {"storage": "2Gi"}},
            **spec,
        },
        "status": {"phase": "Pending"},
    }


def test_provisioner_serves_only_unbound_claims_of_its_class() -> None:
    assert provisioner.wants_volume(claim())
    assert not provisioner.wants_volume(claim(storageClassName="other"))
    assert not provisioner.wants_volume(claim(volumeName="pv-1"))


def test_provisioned_volume_is_pre_bound_to_its_claim_on_its_node() -> None:
    volume = provisioner.volume_for(claim(), Path("/state/volumes"), "n2")
    assert volume["spec"]["claimRef"]["uid"] == "u1"
    assert volume["spec"]["capacity"] == {"storage": "2Gi"}
    assert volume["spec"]["local"]["path"] == "/state/volumes/ns_data_u1"
    (term,) = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}
    ]
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    released = {**volume, "status": {"phase": "Released"}}
    assert provisioner.reclaimable(released, Path("/state/volumes"))
    assert not provisioner.reclaimable(released, Path("/state/nodes/n3/volumes"))  # not its
    assert not provisioner.reclaimable({**volume, "status": {"phase": "Bound"}}, Path("/state"))


def selected(node: str | None) -> dict[str, object]:
    out = claim()
    if node is not None:
        out["metadata"] = {"name": "data", "namespace": "ns", "uid": "u1",
                           "annotations": {provisioner.SELECTED_NODE: node}}  # fmt: skip
    return out


@pytest.mark.parametrize(
    ("primary", "node", "ours", "expected"),
    [
        (False, "me", None, "me"),  # selected for this kubelet's Node
        (False, "other", None, None),  # another kubelet's
        (False, None, None, None),  # not scheduled yet: nobody's
        (True, None, None, None),
        (True, "other", True, None),  # another local kubelet serves its own
        (True, "real-node", False, "real-node"),  # a Node without a provisioner of ours
        (True, "real-node", None, None),  # not looked up (or gone): not yet
    ],
)
def test_each_claim_is_provisioned_by_exactly_one_kubelet(
    primary: bool, node: str | None, ours: bool | None, expected: str | None
) -> None:
    scope = provisioner.Scope(node="me", primary=primary)
    assert scope.node_for(selected(node), selected_is_ours=ours) == expected


@pytest.mark.parametrize(
    ("lines", "limit", "expected"),
    [
        (None, None, b"a\nb\nc\n"),
        (2, None, b"b\nc\n"),
        (0, None, b""),
        (None, 3, b"\nc\n"),
        (2, 2, b"c\n"),
    ],
)
def test_log_tail(lines: int | None, limit: int | None, expected: bytes) -> None:
    assert logserver.tail_bytes(b"a\nb\nc\n", lines, limit) == expected


def test_model_reads_the_api_spelling_of_acronym_fields() -> None:
    pod = Pod.model_validate(
        {
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "c"}],
                "volumes": [
                    {
                        "name": "d",
                        "downwardAPI": {
                            "items": [{"path": "x", "fieldRef": {"fieldPath": "metadata.name"}}]
                        },
                    },
                    {
                        "name": "p",
                        "projected": {
                            "sources": [
                                {"downwardAPI": {"items": []}},
                                {"serviceAccountToken": {"path": "token"}},
                            ]
                        },
                    },
                ],
            },
            "status": {"podIP": "127.1.0.2", "podIPs": [{"ip": "127.1.0.2"}]},
        }
    )
    assert pod.spec.volumes[0].downward_api is not None
    assert pod.spec.volumes[1].projected is not None
    assert pod.spec.volumes[1].projected.sources[0].downward_api is not None
    assert pod.status.pod_ip == "127.1.0.2"


def with_status(*entries: dict[str, object]) -> Pod:
    """A pod with container "c" and these container statuses."""
    return Pod.model_validate(
        {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"containerStatuses": list(entries)},
        }
    )


def test_a_restarted_kubelet_continues_the_restart_count() -> None:
    assert restarts_before(with_status(), "c") == 0
    waiting = {
        "name": "c",
        "restartCount": 0,
        "state": {"waiting": {"reason": "ContainerCreating"}},
    }
    assert restarts_before(with_status(waiting), "c") == 0
    running = {"name": "c", "restartCount": 2, "state": {"running": {}}}
    assert restarts_before(with_status(running), "c") == 3
    assert restarts_before(with_status(running), "other") == 0


def test_a_leftover_process_is_adopted_with_or_without_a_running_status() -> None:
    process_start = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    running = {
        "name": "c",
        "restartCount": 2,
        "ready": True,
        "state": {"running": {"startedAt": "2026-11-25T19:00:00Z"}},
    }
    # The earlier run recorded it running: its status carries over.
    assert adoption(with_status(running), "c", lambda: process_start, 5) == (
        datetime(2026, 11, 25, 19, 0, tzinfo=UTC),
        2,
        True,
    )
    # Killed before it wrote that status: the process is still the container, unready.
    waiting = {"name": "c", "restartCount": 0, "state": {"waiting": {"reason": "x"}}}
    assert adoption(with_status(waiting), "c", lambda: process_start, 1) == (
        process_start,
        1,
        False,
    )
    assert adoption(with_status(), "c", lambda: process_start, 0) == (process_start, 0, False)


def test_a_process_start_time_from_proc_ticks() -> None:
    moment = started_at("250", boot_time=1_700_000_000.0, ticks_per_second=100)
    assert moment == datetime.fromtimestamp(1_700_000_002.5, UTC)


def test_this_process_started_after_boot_and_before_now() -> None:
    start = start_time(os.getpid())
    assert start is not None
    when = Adopted(os.getpid(), start, Path("unused")).started_at()
    assert when <= datetime.now(UTC)


def test_a_local_node_registers_its_zone_and_its_own_pod_range(tmp_path: Path) -> None:
    settings = Settings(
        node_name="n2", zone="zone-b", pod_cidr="127.9.16.0/20", kubeconfig=tmp_path,
        admin_kubeconfig=tmp_path, state_dir=tmp_path, volumes_dir=tmp_path, pid_dir=tmp_path,
        tls_cert=tmp_path, tls_key=tmp_path, client_ca=tmp_path,
    )  # fmt: skip
    node = node_object(settings)
    labels = node["metadata"]["labels"]
    assert labels["topology.kubernetes.io/zone"] == "zone-b"
    assert labels["kubernetes.io/hostname"] == "n2"
    assert labels[LOCAL_KUBELET_LABEL] == "true"
    assert node["spec"] == {"podCIDR": "127.9.16.0/20", "podCIDRs": ["127.9.16.0/20"]}
