"""The node's Prometheus metrics, all on an injected `CollectorRegistry` (review MAJOR-7).

Events (requests, rejections, bans issued, gossip, fetches) are counters and
histograms updated where they happen. Levels (peers, catalogue and store
size, bans in force, drain state, in-flight work) are read at scrape time
from callables the node provides (`Snapshot`, `StateCollector`), so they can
never drift from the state they describe.

Owned by the hardening work (issue 4); the node core uses it. Extend it
compatibly rather than replacing it: the dashboards read these names.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from marketplace_protocol import errors
from marketplace_protocol.admin import DrainState
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "marketplace_node"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SEARCH_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Levels of the node at one instant, gathered by the node core for a scrape."""

    peers: int = 0
    packages: int = 0
    store_bytes: int = 0
    in_flight: int = 0
    pending_queries: int = 0
    drain_state: DrainState = DrainState.SERVING
    bans: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (layer, reason) -> n


class NodeMetrics:
    """Every metric of the node; implements the enforcer's `EnforcerMetrics` protocol."""

    def __init__(
        self, registry: CollectorRegistry, *, snapshot: Callable[[], Snapshot] | None = None
    ) -> None:
        self.registry = registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=registry)

        self.requests = counter(
            "requests", "Requests answered, by operation and outcome (ok or error code).",
            ("operation", "outcome"),
        )  # fmt: skip
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time to answer a request, by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.search_seconds = Histogram(
            f"{PREFIX}_search_seconds",
            "Index search time.",
            buckets=SEARCH_BUCKETS,
            registry=registry,
        )
        self.rate_limited_total = counter(
            "rate_limited", "Requests refused by a limit; scope: peer, global, pending.",
            ("operation", "scope"),
        )  # fmt: skip
        self.refused_banned_total = counter(
            "refused_banned", "Requests refused because the peer or its network is banned.",
            ("operation", "layer"),
        )  # fmt: skip
        self.bans_issued = counter(
            "bans_issued", "Local bans this node decided, by triggering offence.", ("reason",)
        )
        self.policy_applies = counter("policy_applies", "Policy documents applied.")
        self.policy_version = Gauge(
            f"{PREFIX}_policy_applied_version",
            "Version of the fleet policy in force (-1 before the first one).",
            registry=registry,
        )
        self.policy_version.set(-1)
        self.announcements = counter(
            "announcements", "Gossip announcements received, by outcome (new, duplicate, invalid).",
            ("outcome",),
        )  # fmt: skip
        self.gossip_sent = counter("gossip_sent", "Announcement pushes, by outcome.", ("outcome",))
        self.under_replicated = Gauge(
            f"{PREFIX}_under_replicated_packages",
            "Packages this node holds or knows with fewer live copies than the fleet's factor"
            " (as of the last repair pass).",
            registry=registry,
        )
        self.repaired = counter("repaired_copies", "Copies this node's repairer had peers make.")
        self.downloads_uncounted = counter(
            "downloads_uncounted",
            "Downloads served but not counted: the data volume had no room for the count.",
        )
        self.stale_requests = counter(
            "stale_requests",
            "Verified peer requests refused because their `created` lies outside the clock-skew"
            " window: a peer's clock, or ours, is off (clock_offset_seconds says which).",
        )
        self.takedown_refusals = counter(
            "takedown_refusals",
            "Requests for content the fleet took down (publish, view, fetch, copy), answered 451.",
        )
        self.name_refusals = counter(
            "name_refusals",
            "Packages and owner records refused by the names rule (from clients, gossip or sync),"
            " by reason: name_taken, not_owner, version_exists, last_owner, no_such_version.",
            ("reason",),
        )
        self.gossip_bytes = counter(
            "gossip_bytes", "Announcement bytes received (in) and pushed (out).", ("direction",)
        )
        self.fetches = counter(
            "fetches", "Content fetches from providers, by outcome.", ("outcome",)
        )
        if snapshot is not None:
            registry.register(SnapshotCollector(snapshot))

    # -- EnforcerMetrics ----------------------------------------------------------

    def rate_limited(self, operation: str, scope: str) -> None:
        self.rate_limited_total.labels(operation, scope).inc()

    def refused_banned(self, operation: str, layer: str) -> None:
        self.refused_banned_total.labels(operation, layer).inc()

    def ban_issued(self, reason: str) -> None:
        self.bans_issued.labels(reason).inc()

    def policy_applied(self, version: int) -> None:
        self.policy_applies.inc()
        self.policy_version.set(version)

    # -- requests ------------------------------------------------------------------

    def observe(self, operation: str, outcome: str, seconds: float) -> None:
        self.requests.labels(operation, outcome).inc()
        self.latency.labels(operation).observe(max(0.0, seconds))

    @contextmanager
    def timed(self, operation: str) -> Iterator[None]:
        """Count and time a block: outcome `ok`, the `NodeError` code, or `internal`."""
        start = time.perf_counter()
        outcome = "ok"
        try:
            yield
        except errors.NodeError as exc:
            outcome = exc.code
            raise
        except BaseException:
            outcome = "internal"
            raise
        finally:
            self.observe(operation, outcome, time.perf_counter() - start)


class SnapshotCollector(Collector):
    """The standard level gauges, computed at scrape time from the node's `Snapshot`."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        for name, doc, value in (
            ("peers", "Peers in the peer table.", snap.peers),
            ("catalogue_packages", "Packages in the catalogue.", snap.packages),
            ("store_bytes", "Bytes of content and metadata in the store.", snap.store_bytes),
            ("in_flight_requests", "Requests being handled.", snap.in_flight),
            ("pending_queries", "Queries holding a pending slot.", snap.pending_queries),
        ):
            yield GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)
        bans = GaugeMetricFamily(
            f"{PREFIX}_bans_active",
            "Bans in force by layer and reason.",
            labels=["layer", "reason"],
        )
        for (layer, reason), count in sorted(snap.bans.items()):
            bans.add_metric([layer, reason], count)
        yield bans
        drain = GaugeMetricFamily(
            f"{PREFIX}_drain_state", "1 for the node's current drain state.", labels=["state"]
        )
        for state in DrainState:
            drain.add_metric([state.value], 1.0 if state is snap.drain_state else 0.0)
        yield drain


class StateCollector(Collector):
    """Free-form gauges read at scrape time: `read()` returns `{name: value}`."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        for name, value in sorted(self._read().items()):
            yield GaugeMetricFamily(
                f"{PREFIX}_{name}", f"Current {name.replace('_', ' ')}.", value=value
            )
