"""The operator's edges without a cluster: status patches, settings, metrics, the admin client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiohttp import web
from marketplace_operator import actuate, errors, nodeloop
from marketplace_operator.context import Context, PushedMembers
from marketplace_operator.metrics import Metrics
from marketplace_operator.model.mnode import MarketplaceNodeStatus, Phase
from marketplace_operator.nodeclient import OPERATIONS, NodeClient, base_url
from marketplace_operator.render.names import TlsMount
from marketplace_operator.settings import Settings
from marketplace_protocol.admin import DrainState, Member, Members
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

# --- the status patch ------------------------------------------------------------------


def test_status_patch_is_empty_when_nothing_changed() -> None:
    new = MarketplaceNodeStatus(phase=Phase.READY, peers=2, pod_ip="127.1.0.4")
    stored = new.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert nodeloop._status_patch(stored, new) == {}


def test_status_patch_sets_changes_and_clears_what_went_away() -> None:
    old = {"phase": "Ready", "podIP": "127.1.0.4", "podName": "n1", "peers": 2, "kopf": {"x": 1}}
    new = MarketplaceNodeStatus(phase=Phase.PENDING, peers=2)
    assert nodeloop._status_patch(old, new) == {"phase": "Pending", "podIP": None, "podName": None}


def test_previous_status_tolerates_foreign_fields() -> None:
    assert nodeloop._previous_status({"phase": "Ready", "somethingElse": 1}).phase is None
    assert nodeloop._previous_status({"phase": "Ready"}).phase is Phase.READY


# --- settings --------------------------------------------------------------------------


def test_settings_from_environment_and_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPLACE_OPERATOR_NAMESPACES", '["a", "b"]')
    monkeypatch.setenv("MARKETPLACE_OPERATOR_POLL_INTERVAL_SECONDS", "2.5")
    settings = Settings()
    assert settings.watched_namespaces == ["a", "b"]
    assert settings.poll_interval_seconds == 2.5
    assert Settings(namespaces=[]).watched_namespaces == ["default"]
    assert Settings(namespaces=[], all_namespaces=True).watched_namespaces == []


@pytest.mark.parametrize(
    "bad",
    [
        {"namespaces": ["a"], "all_namespaces": True},
        {"poll_interval_seconds": 0},
        {"log_level": "LOUD"},
        {"no_such_setting": 1},
    ],
)
def test_settings_refuse_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)


# --- metrics ---------------------------------------------------------------------------


def test_metrics_count_outcomes_and_phases_at_scrape_time() -> None:
    registry = CollectorRegistry()
    got = registry.get_sample_value
    phases: dict[Any, Phase] = {("ns", "a"): Phase.READY, ("ns", "b"): Phase.READY}
    metrics = Metrics(registry, phases=lambda: phases)
    for operation in OPERATIONS:  # every operation's series exists from the start
        assert got("marketplace_operator_admin_api_errors_total", {"operation": operation}) == 0
        assert got("marketplace_operator_admin_api_calls_total", {"operation": operation}) == 0
    metrics.admin_call("status")
    metrics.admin_call("status")
    assert got("marketplace_operator_admin_api_calls_total", {"operation": "status"}) == 2
    metrics.observe_reconcile("ok", 0.2)
    metrics.observe_reconcile("retry", 1.0)
    metrics.admin_error("status")
    assert got("marketplace_operator_reconciliations_total", {"outcome": "ok"}) == 1
    assert got("marketplace_operator_reconcile_duration_seconds_count", {"outcome": "retry"}) == 1
    assert got("marketplace_operator_admin_api_errors_total", {"operation": "status"}) == 1
    assert got("marketplace_operator_managed_nodes", {"phase": "Ready"}) == 2
    phases[("ns", "b")] = Phase.DEGRADED
    assert got("marketplace_operator_managed_nodes", {"phase": "Ready"}) == 1
    assert got("marketplace_operator_managed_nodes", {"phase": "Degraded"}) == 1


# --- the admin API client against a real HTTP server on loopback ------------------------


@pytest.fixture
async def fake_node(unused_tcp_port: int) -> AsyncIterator[dict[str, Any]]:
    seen: dict[str, Any] = {"members": None, "auth": []}

    async def status(request: web.Request) -> web.Response:
        seen["auth"].append(request.headers.get("Authorization"))
        seen["peers_asked"] = request.rel_url.query.get("peers")
        if request.headers.get("Authorization") != "Bearer s3cret":
            body = {"code": "unauthenticated", "message": "no", "retryable": False, "details": {}}
            return web.json_response(body, status=401)
        return web.json_response({"peerId": "mpself00", "peers": [], "ready": True})

    async def members(request: web.Request) -> web.Response:
        seen["members"] = await request.json()
        return web.Response(status=204)

    async def drain(_: web.Request) -> web.Response:
        return web.json_response({"state": "draining", "inFlight": 1}, status=202)

    async def drain_status(_: web.Request) -> web.Response:
        return web.json_response({"state": "drained", "inFlight": 0})

    app = web.Application()
    app.router.add_get("/admin/v1/status", status)
    app.router.add_put("/admin/v1/members", members)
    app.router.add_post("/admin/v1/drain", drain)
    app.router.add_get("/admin/v1/drain", drain_status)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    seen["base"] = base_url("127.0.0.1", unused_tcp_port)
    yield seen
    await runner.cleanup()


async def test_admin_client_calls_and_translates_errors(fake_node: dict[str, Any]) -> None:
    failures: list[str] = []
    calls: list[str] = []
    client = NodeClient.create(timeout=2.0, on_error=failures.append, on_call=calls.append)
    try:
        base = fake_node["base"]
        status = await client.status(base, "s3cret", peers=7)
        assert fake_node["peers_asked"] == "7"
        assert status.peer_id == "mpself00"
        assert status.ready
        with pytest.raises(errors.NodeRefused) as refused:
            await client.status(base, "wrong", peers=7)
        assert refused.value.code == "unauthenticated"
        assert refused.value.status == 401
        await client.put_members(
            base, "s3cret", Members(members=[Member(address="http://x:1", name="b")])
        )
        assert fake_node["members"] == {
            "members": [{"address": "http://x:1", "peerId": None, "name": "b"}]
        }
        drain = await client.drain(base, "s3cret", timeout_seconds=5)
        assert drain.state is DrainState.DRAINING
        assert (await client.drain_status(base, "s3cret")).state is DrainState.DRAINED
        with pytest.raises(errors.NodeUnreachable):
            await client.status("http://127.0.0.1:9", "s3cret", peers=7)
        assert failures == ["status", "status"]
        assert calls == ["status", "status", "members", "drain", "drain-status", "status"]
        assert "Bearer s3cret" in fake_node["auth"]
    finally:
        await client.close()


async def test_drain_waits_until_drained(fake_node: dict[str, Any]) -> None:
    client = NodeClient.create(timeout=2.0)
    try:
        done = await actuate.drain(
            client, fake_node["base"], "s3cret", deadline_seconds=5, poll=0.01
        )
        assert done is True
    finally:
        await client.close()


def test_refused_passes_back_off_to_a_cap() -> None:
    """Issue #19 defect 5: a spec the API server refuses is not retried every 5 s."""
    assert nodeloop.backoff(5.0, 0) == 5.0
    assert nodeloop.backoff(5.0, 1) == 10.0
    assert nodeloop.backoff(5.0, 3) == 40.0
    assert nodeloop.backoff(5.0, 50) == nodeloop.MAX_BACKOFF_SECONDS
    assert nodeloop.backoff(0.5, 1) == 2.0  # a starting node's fast poll backs off too


@pytest.mark.parametrize(
    ("members", "since", "due"),
    [
        (3, 0.2, True),  # a small fleet: as good as at once (0.15 s)
        (3, 0.1, False),
        (300, 14.0, False),  # 300 pods' volumes: at most 20 a second, so every 15 s
        (300, 15.0, True),
        (1000, 49.0, False),
        (1000, 50.0, True),
        (100_000, 59.0, False),  # never later than a kubelet's sync period
        (100_000, 60.0, True),
    ],
)
def test_members_json_is_written_at_a_pace_its_pods_volumes_can_follow(
    members: int, since: float, due: bool
) -> None:
    assert nodeloop.members_file_due(100.0, 100.0 + since, members) is due
    assert nodeloop.members_file_due(None, 0.0, members)  # never written by this operator: now


def _pushed(others: int = 5, *, uid: str = "pod-1", digest: str = "old") -> PushedMembers:
    return PushedMembers(pod_uid=uid, digest=digest, at=100.0, others=others)


@pytest.mark.parametrize(
    ("members", "since", "due"),
    [
        (3, 0.2, False),  # a small fleet: at once all the same
        (3, 0.7, True),
        (100, 19.0, False),  # 100: 500 entries a second, 100 lists of 100 in 20 s
        (100, 20.0, True),
        (300, 179.0, False),
        (300, 180.0, True),
        (1000, 1999.0, False),  # no cap: the bytes, not the lists, are bounded
        (1000, 2000.0, True),
    ],
)
def test_a_list_where_only_addresses_moved_waits_longer(
    members: int, since: float, due: bool
) -> None:
    """A rollout moves every address and no node or peer id: a running node meets the
    replaced member through it (told of everyone at once) and admits it by its peer id."""
    got = nodeloop.members_push_due(
        _pushed(), pod_uid="pod-1", digest="new", others=5, now=100.0 + since,
        members=members, same_roster=True,
    )  # fmt: skip
    assert got is due
    assert nodeloop.members_push_due(  # a new node joined the fleet: the usual pace
        _pushed(), pod_uid="pod-1", digest="new", others=5, now=100.0 + 60.0,
        members=members, same_roster=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("pushed", "uid", "digest", "others", "members", "since", "due"),
    [
        (None, "pod-1", "new", 5, 1000, 0.0, True),  # never pushed: at once
        (_pushed(), "pod-2", "old", 5, 1000, 0.0, True),  # a new pod: at once, even unchanged
        (_pushed(), "pod-1", "old", 5, 1000, 600.0, False),  # unchanged: never again
        (_pushed(0), "pod-1", "new", 1, 1000, 0.0, True),  # it knew no one: at once
        (_pushed(0), "pod-1", "new", 0, 1000, 0.0, False),  # still no one to tell of
        (_pushed(), "pod-1", "new", 5, 3, 0.2, True),  # a small fleet: as good as at once
        (_pushed(), "pod-1", "new", 5, 3, 0.1, False),
        (_pushed(), "pod-1", "new", 999, 1000, 49.0, False),  # 1,000: 20 lists a second
        (_pushed(), "pod-1", "new", 999, 1000, 50.0, True),
        (_pushed(), "pod-1", "new", 5, 100_000, 60.0, True),  # never later than a minute
    ],
)
def test_a_running_pod_is_told_of_a_changed_fleet_at_a_pace(
    pushed: PushedMembers | None,
    uid: str,
    digest: str,
    others: int,
    members: int,
    since: float,
    due: bool,
) -> None:
    """Issue 15: each member change re-pushed the whole list to every node at its next
    pass (150 KB to each of 1,000 nodes per rollout step)."""
    got = nodeloop.members_push_due(
        pushed, pod_uid=uid, digest=digest, others=others, now=100.0 + since, members=members
    )
    assert got is due


# --- the pod inputs, kept while the spec is the same ---------------------------------


def _mnode(generation: int | None, *, restart: str = "", image: str = "img:1") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "n1", "namespace": "ns", "uid": "u1"}
    if generation is not None:
        meta["generation"] = generation
    if restart:
        meta["annotations"] = {"marketplace.p2p.dev/restartedAt": restart}
    return {"metadata": meta, "spec": {"fleet": "blue", "image": image}}


def test_a_nodes_pod_inputs_are_kept_until_its_spec_restart_or_tls_change() -> None:
    ctx = Context(
        settings=Settings(), kube=cast("Any", None), nodes=cast("Any", None),
        metrics=cast("Any", None), tokens=cast("Any", None),
    )  # fmt: skip
    first = nodeloop._inputs(ctx, _mnode(1), None)
    assert nodeloop._inputs(ctx, _mnode(1), None) is first  # a status write's event: kept
    changed = nodeloop._inputs(ctx, _mnode(2, image="img:2"), None)  # a new generation
    assert changed is not first
    assert changed.image == "img:2"
    assert changed.digest != first.digest
    restarted = nodeloop._inputs(ctx, _mnode(2, image="img:2", restart="t1"), None)
    assert restarted.restart_token == "t1"
    mount = TlsMount(secret="s", peer_name="p")
    assert nodeloop._inputs(ctx, _mnode(2, image="img:2", restart="t1"), mount).tls == mount
    # A body that is not the API server's (no generation) is read afresh every time.
    assert nodeloop._inputs(ctx, _mnode(None), None) is not nodeloop._inputs(
        ctx, _mnode(None), None
    )
