"""`kubectl marketplace status`: rows, lag, rollout column, table and structured output."""

from __future__ import annotations

from datetime import UTC, datetime

from marketplace_kubectl import status

from . import objects as o

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_rows_show_lag_against_the_fleet_configmap_and_the_rollout_position() -> None:
    nodes = [o.mnode("b", policy=3), o.mnode("a", policy=1), o.mnode("c", policy=None)]
    fleet = o.fleet(phase="Progressing", steps=[{"node": "a", "phase": "Draining"}], plan=["b"])
    (view,) = status.fleets(nodes, [fleet], {"demo": 3}, NOW)
    assert [r.name for r in view.nodes] == ["a", "b", "c"]
    assert [r.lag for r in view.nodes] == [2, 0, None]
    assert [r.rollout for r in view.nodes] == ["replacing (Draining)", "queued #1", "-"]
    assert view.nodes[0].age == "60m"


def test_paused_failed_and_unknown_policy() -> None:
    fleet = o.fleet(
        phase="Paused", paused=True, plan=["a"], failures=[{"node": "b", "reason": "PodFailed"}]
    )
    (view,) = status.fleets([o.mnode("a"), o.mnode("b")], [fleet], {}, NOW)
    assert [r.rollout for r in view.nodes] == ["paused #1", "failed (PodFailed)"]
    assert [r.lag for r in view.nodes] == [None, None]  # no ConfigMap version: unknown


def test_only_one_fleet_and_fleets_sorted() -> None:
    nodes = [o.mnode("x", fleet="blue"), o.mnode("y", fleet="green"), o.mnode("z", fleet="blue")]
    views = status.fleets(nodes, [], {}, NOW)
    assert [v.name for v in views] == ["blue", "green"]
    (blue,) = status.fleets(nodes, [], {}, NOW, only="blue")
    assert [r.name for r in blue.nodes] == ["x", "z"]
    assert blue.rollout == "Unknown"  # no MarketplaceFleet yet
    (empty,) = status.fleets(nodes, [], {}, NOW, only="red")
    assert empty.nodes == ()


def test_table_has_kubectl_columns_and_wide_adds_addresses() -> None:
    views = status.fleets([o.mnode("a")], [o.fleet()], {"demo": 3}, NOW)
    lines = status.render_table(views, wide=False).splitlines()
    assert lines[0].split() == [
        "FLEET",
        "NAME",
        "PHASE",
        "READY",
        "PEERS",
        "POLICY",
        "LAG",
        "ROLLOUT",
        "AGE",
    ]
    assert lines[1].split() == ["demo", "a", "Ready", "True", "2", "3", "0", "-", "60m"]
    wide = status.render_table(views, wide=True).splitlines()
    assert wide[0].split()[-3:] == ["POD-IP", "PEER-ID", "MESSAGE"]
    assert "10.0.0.1" in wide[1]
    assert "REPLICATION" not in lines[0]
    assert status.render_summary(views) == "fleet demo: rollout Complete, policy v3\n"


def test_replication_column_appears_only_where_a_fleet_reports_it() -> None:
    fleet = o.fleet()
    fleet["status"]["replication"] = {"underReplicated": 2}
    views = status.fleets([o.mnode("a")], [fleet], {}, NOW)
    header, row = status.render_table(views, wide=False).splitlines()
    assert "REPLICATION" in header.split()
    assert "2 under-replicated" in row
    fleet["status"]["replication"] = {"underReplicated": 0}
    assert status.fleets([o.mnode("a")], [fleet], {}, NOW)[0].replication == "healthy"


def test_structured_output_keeps_numbers_as_numbers() -> None:
    data = status.as_data(status.fleets([o.mnode("a", policy=2)], [o.fleet()], {"demo": 3}, NOW))
    (fleet,) = data["fleets"]
    assert fleet["policyVersion"] == 3
    (node,) = fleet["nodes"]
    assert (node["peers"], node["policy"], node["lag"], node["podIP"]) == (2, 2, 1, "10.0.0.1")
