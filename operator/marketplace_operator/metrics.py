"""The operator's Prometheus metrics, on an injected registry (tests use a fresh one)."""

from __future__ import annotations

import itertools
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from marketplace_operator.model.mnode import Phase
from marketplace_operator.nodeclient import OPERATIONS


class _PhaseCollector(Collector):
    """`managed_nodes{phase}` computed at scrape time from the operator's own view."""

    def __init__(self, phases: Callable[[], Mapping[object, Phase]]) -> None:
        self._phases = phases

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "marketplace_operator_managed_nodes", "MarketplaceNodes by phase", labels=["phase"]
        )
        counts = Tally(self._phases().values())
        for phase in Phase:
            family.add_metric([phase.value], counts.get(phase, 0))
        yield family


STATUS_WRITE_KINDS = ("urgent", "peers", "detail")  # `nodeloop.patch_kind`'s answers
WATCHED_KINDS = ("pods", "marketplacenodes")  # `handlers.watches`: the busiest kinds
PASS_TRIGGERS = ("start", "event", "join", "resync", "write")  # `nodeloop._pause`: why a pass
PASS_POLLS = ("asked", "reused", "skipped")  # `nodeloop.Poll.how`: the node's status


class _ZeroedCounters:
    """Counters whose every combination of known label values is exported at 0 until first
    counted: absent series break rates and dashboards ("no data" is not "none")."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def __call__(self, name: str, documentation: str, **labels: Sequence[str]) -> Counter:
        counter = Counter(name, documentation, list(labels), registry=self._registry)
        for values in itertools.product(*labels.values()):
            counter.labels(*values)
        return counter


class Metrics:
    def __init__(
        self, registry: CollectorRegistry, *, phases: Callable[[], Mapping[object, Phase]]
    ) -> None:
        self.registry = registry
        self.reconciliations = Counter(
            "marketplace_operator_reconciliations",
            "Reconciliations of MarketplaceNodes by outcome",
            ["outcome"],
            registry=registry,
        )
        self.reconcile_seconds = Histogram(
            "marketplace_operator_reconcile_duration_seconds",
            "Duration of one MarketplaceNode reconciliation by outcome",
            ["outcome"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.turn_wait = Histogram(
            "marketplace_operator_pass_turn_wait_seconds",
            "Time a MarketplaceNode pass waited for one of `reconcile_concurrency` turns, by "
            "whether it was urgent (a generation its status had not observed yet)",
            ["urgent"],
            registry=registry,
            buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        for urgent in ("true", "false"):
            self.turn_wait.labels(urgent)
        counter = _ZeroedCounters(registry)
        self.admin_calls = counter(
            "marketplace_operator_admin_api_calls",
            "Calls to nodes' admin API by operation (each retry with another token too)",
            operation=OPERATIONS,
        )
        self.admin_errors = counter(
            "marketplace_operator_admin_api_errors",
            "Failed calls to nodes' admin API by operation",
            operation=OPERATIONS,
        )
        self.node_passes = counter(
            "marketplace_operator_node_passes",
            "MarketplaceNode passes by what began them (start: the loop's first; event: a "
            "watch event; join: the start-up pace of a node not yet joined; resync: the "
            "routine pace; write: a status write held back) and how the node's status was "
            "had (asked, reused: its answer of a moment ago, skipped: not answering yet)",
            trigger=PASS_TRIGGERS,
            poll=PASS_POLLS,
        )
        self.status_writes = counter(
            "marketplace_operator_status_writes",
            "MarketplaceNode status patches by what they carry: urgent (phase, a condition's "
            "status, observed generation, policy), peers (the peer count or list alone), "
            "detail (anything else)",
            kind=STATUS_WRITE_KINDS,
        )
        self.watch_events = counter(
            "marketplace_operator_watch_events",
            "Watch events of the busiest kinds the operator handled (each runs kopf's "
            "indexes and the fan-out to the node loop, the rollout and the policy worker)",
            kind=WATCHED_KINDS,
        )
        self.gc_seconds = counter(
            "marketplace_operator_gc_seconds",
            "CPU seconds in CPython's cyclic garbage collector by generation (`gcpace`)",
            generation=("0", "1", "2"),
        )
        self.api_unavailable = counter(
            "marketplace_operator_api_unavailable",
            "Calls the API server did not answer (no connection, timeout, 429, 5xx) by verb",
            verb=("GET", "POST", "PUT", "PATCH", "DELETE"),
        )
        self.api_ready = Gauge(
            "marketplace_operator_api_ready",
            "1 while the API server answers GET /readyz (which checks etcd too), else 0",
            registry=registry,
        )
        self.api_ready.set(1)
        registry.register(_PhaseCollector(phases))

    def observe_reconcile(self, outcome: str, seconds: float) -> None:
        self.reconciliations.labels(outcome).inc()
        self.reconcile_seconds.labels(outcome).observe(seconds)

    def turn_waited(self, *, urgent: bool, seconds: float) -> None:
        self.turn_wait.labels("true" if urgent else "false").observe(seconds)

    def admin_call(self, operation: str) -> None:
        self.admin_calls.labels(operation).inc()

    def status_write(self, kind: str) -> None:
        self.status_writes.labels(kind).inc()

    def node_pass(self, trigger: str, poll: str) -> None:
        self.node_passes.labels(trigger, poll).inc()

    def gc_collection(self, generation: int, seconds: float) -> None:
        self.gc_seconds.labels(str(generation)).inc(seconds)

    def watch_event(self, kind: str) -> None:
        self.watch_events.labels(kind).inc()

    def admin_error(self, operation: str) -> None:
        self.admin_errors.labels(operation).inc()

    def api_readiness(self, ready: bool) -> None:
        self.api_ready.set(1 if ready else 0)

    def api_unavailable_call(self, verb: str) -> None:
        self.api_unavailable.labels(verb).inc()
