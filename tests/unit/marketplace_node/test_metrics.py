"""Metrics on a fresh registry: request outcomes and latency, scrape-time levels."""

from __future__ import annotations

import pytest
from marketplace_node.metrics import NodeMetrics, Snapshot, StateCollector
from marketplace_protocol import errors
from marketplace_protocol.admin import DrainState
from prometheus_client import CollectorRegistry, generate_latest


def test_timed_counts_outcomes_by_error_code() -> None:
    registry = CollectorRegistry()
    metrics = NodeMetrics(registry)
    with metrics.timed("search"):
        pass
    with pytest.raises(errors.RateLimited), metrics.timed("search"):
        raise errors.RateLimited("slow", retry_after=1)
    with pytest.raises(ZeroDivisionError), metrics.timed("fetch"):
        _ = 1 / 0

    def count(operation: str, outcome: str) -> float | None:
        return registry.get_sample_value(
            "marketplace_node_requests_total", {"operation": operation, "outcome": outcome}
        )

    assert count("search", "ok") == 1
    assert count("search", "rate_limited") == 1
    assert count("fetch", "internal") == 1
    assert (
        registry.get_sample_value(
            "marketplace_node_request_duration_seconds_count", {"operation": "search"}
        )
        == 2
    )


def test_levels_are_read_at_scrape_time() -> None:
    registry = CollectorRegistry()
    state = {"peers": 2}
    NodeMetrics(
        registry,
        snapshot=lambda: Snapshot(
            peers=state["peers"],
            packages=10,
            store_bytes=4096,
            in_flight=1,
            drain_state=DrainState.DRAINING,
            bans={("local", "rate_limited"): 3},
        ),
    )
    assert registry.get_sample_value("marketplace_node_peers") == 2
    state["peers"] = 5
    assert registry.get_sample_value("marketplace_node_peers") == 5
    assert registry.get_sample_value("marketplace_node_catalogue_packages") == 10
    assert (
        registry.get_sample_value(
            "marketplace_node_bans_active", {"layer": "local", "reason": "rate_limited"}
        )
        == 3
    )
    assert registry.get_sample_value("marketplace_node_drain_state", {"state": "draining"}) == 1
    assert registry.get_sample_value("marketplace_node_drain_state", {"state": "serving"}) == 0


def test_free_form_state_collector_and_exposition() -> None:
    registry = CollectorRegistry()
    metrics = NodeMetrics(registry)
    registry.register(StateCollector(lambda: {"subscribers": 4.0}))
    metrics.policy_applied(12)
    metrics.gossip_sent.labels("ok").inc()
    text = generate_latest(registry).decode()
    assert "marketplace_node_subscribers 4.0" in text
    assert "marketplace_node_policy_applied_version 12.0" in text
    assert 'marketplace_node_gossip_sent_total{outcome="ok"} 1.0' in text


def test_two_nodes_in_one_process_do_not_share_metrics() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    NodeMetrics(a).ban_issued("invalid_data")
    NodeMetrics(b)
    assert a.get_sample_value("marketplace_node_bans_issued_total", {"reason": "invalid_data"}) == 1
    assert (
        b.get_sample_value("marketplace_node_bans_issued_total", {"reason": "invalid_data"}) is None
    )
