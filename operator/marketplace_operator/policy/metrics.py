"""Fleet-policy metrics, created on an injected registry (tests use a fresh one)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class PolicyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._auto_reasons: dict[tuple[str, str], set[str]] = {}
        self.propagation_seconds = Histogram(
            "marketplace_operator_policy_propagation_seconds",
            "From a BanList/RateLimitPolicy change to every node of the fleet acknowledging it",
            registry=registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30, 60),
        )
        self.push_failures = Counter(
            "marketplace_operator_policy_push_failures",
            "Policy pushes a node did not acknowledge, by node",
            ["namespace", "node"],
            registry=registry,
        )
        self.pushes = Counter(
            "marketplace_operator_policy_pushes",
            "Policy documents sent to nodes, by fleet",
            ["namespace", "fleet"],
            registry=registry,
        )
        self.bans = Gauge(
            "marketplace_operator_policy_bans",
            "Bans in a fleet's effective policy",
            ["namespace", "fleet"],
            registry=registry,
        )
        self.policy_bytes = Gauge(
            "marketplace_operator_policy_bytes",
            "Size of a fleet's effective policy as stored in its ConfigMap",
            ["namespace", "fleet"],
            registry=registry,
        )
        self.version = Gauge(
            "marketplace_operator_policy_version",
            "Current policy version of a fleet",
            ["namespace", "fleet"],
            registry=registry,
        )
        self.auto_bans = Gauge(
            "marketplace_operator_auto_bans",
            "Automatic (node-decided) bans of a fleet by reason",
            ["namespace", "fleet", "reason"],
            registry=registry,
        )

    def set_auto_bans(self, namespace: str, fleet: str, by_reason: Mapping[str, int]) -> None:
        """Replace the fleet's auto-ban counts (reasons no longer present drop to absent)."""
        for reason in self._auto_reasons.get((namespace, fleet), set()) - set(by_reason):
            self.auto_bans.remove(namespace, fleet, reason)
        for reason, count in by_reason.items():
            self.auto_bans.labels(namespace, fleet, reason).set(count)
        self._auto_reasons[(namespace, fleet)] = set(by_reason)
