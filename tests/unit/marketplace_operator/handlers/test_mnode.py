"""When the operator may turn off kopf's namespace/CRD scanning (see handlers.mnode.configure)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, cast

import kopf
import pytest
from kopf import OperatorSettings
from marketplace_operator.context import FleetMemo
from marketplace_operator.handlers.mnode import (
    _INDEXES,
    configure,
    gather,
    kopf_credentials,
    may_skip_scanning,
    mnode_pods,
    shed_managed_fields,
)
from marketplace_operator.handlers.policy import IndexInputs
from marketplace_operator.policy.ports import FleetKey
from marketplace_operator.reconcile import fleet
from marketplace_operator.render import names
from marketplace_operator.settings import Settings


@pytest.mark.parametrize(
    ("namespaces", "all_namespaces", "expected"),
    [
        (["marketplace"], False, True),
        (["team-a", "team-b", "x"], False, True),
        (["a" * 63], False, True),
        ([], True, False),  # cluster-wide: kopf scans no namespaces; CRDs stay watched
        ([], False, False),  # nothing exact to serve
        (["ns-*"], False, False),
        (["ns-?"], False, False),
        (["!kube-system"], False, False),
        (["team-a", "!team-b"], False, False),  # one pattern among names is enough
        (["team-a,team-b"], False, False),  # kopf's comma-separated pattern
        (["myapp-*, !*-pr-*"], False, False),
        (["Team-A"], False, False),  # not a namespace name: leave it to kopf's matching
        (["-team"], False, False),
        (["team-"], False, False),
        (["a" * 64], False, False),
    ],
)
def test_may_skip_scanning(namespaces: list[str], all_namespaces: bool, expected: bool) -> None:
    assert may_skip_scanning(namespaces, all_namespaces=all_namespaces) is expected


@pytest.mark.parametrize(
    ("cfg", "disabled"),
    [
        (Settings(namespaces=[], all_namespaces=False), True),  # watches "default" only
        (Settings(namespaces=["marketplace", "team-b"]), True),
        (Settings(namespaces=["team-*"]), False),
        (Settings(all_namespaces=True), False),
    ],
)
def test_configure_applies_the_decision(cfg: Settings, disabled: bool) -> None:
    settings = kopf.OperatorSettings()
    assert settings.scanning.disabled is False  # kopf's default: scanning on
    configure(settings, cfg)
    assert settings.scanning.disabled is disabled


def test_gather_gives_the_gate_the_other_members_peer_ids_as_a_set() -> None:
    indexes: dict[str, Any] = {name: {} for name in _INDEXES}
    indexes["mnode_peer_ids"] = {("ns", "blue"): [("n1", "mp1"), ("n2", "mp2"), ("n3", "mp3")]}
    views = gather("ns", "n2", "blue", indexes, FleetMemo())
    assert views.other_peer_ids == frozenset({"mp1", "mp3"})
    assert "mp2" not in views.other_peer_ids
    assert len(views.other_peer_ids) == 2
    assert views.peer_ids == {"n1": "mp1", "n2": "mp2", "n3": "mp3"}


def test_every_member_shares_its_fleets_peer_ids_until_they_change() -> None:
    """One dict and one set per fleet, not a copy per pass of each member (issue 15)."""
    fleets = FleetMemo()
    members = [("n1", "mp1"), ("n2", "mp2")]
    indexes: dict[str, Any] = {name: {} for name in _INDEXES}
    indexes["mnode_peer_ids"] = {("ns", "blue"): members}
    first, second = (gather("ns", n, "blue", indexes, fleets) for n in ("n1", "n2"))
    assert first.peer_ids is second.peer_ids
    assert set(first.other_peer_ids) == {"mp2"}
    assert set(second.other_peer_ids) == {"mp1"}
    members.append(("n3", "mp3"))  # kopf's index changed in place: seen at the next pass
    third = gather("ns", "n1", "blue", indexes, fleets)
    assert third.peer_ids == {"n1": "mp1", "n2": "mp2", "n3": "mp3"}
    assert set(third.other_peer_ids) == {"mp2", "mp3"}


KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: t0k3n}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
"""


@pytest.mark.parametrize(
    ("cfg", "limit"),
    [
        (Settings(namespaces=["marketplace"]), 48),
        (Settings(namespaces=["a", "b", "c"]), 80),
        (Settings(all_namespaces=True), 48),
        (Settings(namespaces=["team-*"]), None),  # how many watches: not known
    ],
)
def test_kopf_logs_in_with_its_own_credentials_on_a_bounded_pool(
    cfg: Settings, limit: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: kopf's own pool was unbounded; 100 nodes created at once were 102 TLS
    connections to the API server, 1,000 nodes about 1,900 (most of the operator's RSS)."""
    (tmp_path / "config").write_text(KUBECONFIG)
    # read once, when kubernetes is imported: where KUBECONFIG pointed then
    location = "kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION"
    monkeypatch.setattr(location, str(tmp_path / "config"))

    async def run() -> None:
        # what the login handler does: kopf's default discovery, then our pool
        info = kopf.login_via_client(logger=logging.getLogger("t"), settings=OperatorSettings())
        got = kopf_credentials(info, cfg)
        if limit is None:
            assert isinstance(got, kopf.ConnectionInfo)  # kopf's own pool
            return
        assert isinstance(got, kopf.AiohttpSession)
        try:
            assert got.server == "https://127.0.0.1:6443"
            assert got.aiohttp_session.connector is not None
            assert got.aiohttp_session.connector.limit == limit
            assert got.aiohttp_session.headers["Authorization"] == "Bearer t0k3n"
        finally:
            await got.aiohttp_session.close()

    asyncio.run(run())


def test_the_body_kopf_keeps_for_a_nodes_daemon_loses_only_its_managed_fields() -> None:
    raw: dict[str, Any] = {
        "metadata": {
            "name": "n1", "uid": "u1", "resourceVersion": "7", "annotations": {"a": "b"},
            "managedFields": [{"manager": "kopf", "fieldsV1": {"f:status": {}}}],
        },
        "spec": {"fleet": "blue"},
        "status": {"phase": "Ready"},
    }  # fmt: skip
    body = kopf.Body(cast("kopf.RawBody", raw))
    shed_managed_fields(body)
    assert raw == {
        "metadata": {"name": "n1", "uid": "u1", "resourceVersion": "7", "annotations": {"a": "b"}},
        "spec": {"fleet": "blue"},
        "status": {"phase": "Ready"},
    }
    assert body["metadata"]["name"] == "n1"  # kopf's view reads the same dict
    shed_managed_fields(kopf.Body(cast("kopf.RawBody", {})))  # nothing to shed: no error


def test_the_pod_index_keeps_what_the_decisions_read_and_no_raw_part() -> None:
    status = {
        "phase": "Running", "podIP": "10.21.0.5", "startTime": "2026-12-05T02:20:59Z",
        "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": None}],
        "containerStatuses": [{"image": "node:1", "restartCount": 0, "started": True}],
    }  # fmt: skip
    raw: dict[str, Any] = {
        "metadata": {
            "name": "n1", "namespace": "ns", "uid": "p1", "labels": {"x": "y"},
            "managedFields": [{"manager": "kubelet"}],
        },
        "spec": {"nodeName": "local-node", "containers": [{"name": "node"}]},
        "status": status,
    }  # fmt: skip
    index: Any = mnode_pods  # kopf's decorator types it as its IndexingFn
    found = asyncio.run(index(body=kopf.Body(cast("kopf.RawBody", raw)), namespace="ns", name="n1"))
    assert found == {
        ("ns", "n1"): {
            "metadata": {"name": "n1", "namespace": "ns", "uid": "p1", "labels": {"x": "y"}},
            "spec": {"nodeName": "local-node"},
            "status": {
                "phase": "Running", "podIP": "10.21.0.5",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"restartCount": 0, "started": True}],
            },
        }
    }  # fmt: skip


def test_the_pod_index_also_lists_a_nodes_pod_among_its_fleets_members() -> None:
    """One index handler per pod event (kopf runs each on its own): the pod under its own
    name, and as a member of its fleet, which the policy worker finds its fleets by."""
    labels = {**names.MANAGED, names.NODE_LABEL: "n1", names.FLEET_LABEL: "blue"}
    raw: dict[str, Any] = {
        "metadata": {"name": "mnode-n1", "namespace": "ns", "uid": "p1", "labels": labels},
        "spec": {"containers": [{"name": "node", "ports": [{"containerPort": 7171}]}]},
        "status": {
            "phase": "Running",
            "podIP": "10.21.0.5",
            "containerStatuses": [{"name": "node", "started": True}],
        },
    }
    index: Any = mnode_pods  # kopf's decorator types it as its IndexingFn
    found = asyncio.run(
        index(body=kopf.Body(cast("kopf.RawBody", raw)), namespace="ns", name="mnode-n1")
    )
    member = found[fleet.members_key("ns", "blue")]
    assert (member.node, member.port, member.pod.ip) == ("n1", 7171, "10.21.0.5")
    assert ("ns", "mnode-n1") in found
    no: Any = {}
    pods = {key: [value] for key, value in found.items()}
    inputs = IndexInputs(no, no, cast("Any", pods), no, no)
    assert inputs.fleets() == {FleetKey("ns", "blue")}  # not the pod's own key
    assert [t.name for t in inputs.nodes(FleetKey("ns", "blue"))] == ["n1"]
