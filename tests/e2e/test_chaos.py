"""The chaos suite: each fault under steady client load, during a rollout and during a
policy change (issue 15, docs/local-cluster.md).

Per scenario: a fleet of three (maxUnavailable 1) serves reads (`loadgen`) and takes a
publish a second (`chaos.Publisher`); the situation starts, the fault hits 1.5 s later
and heals. Asserted:

- no acknowledged publish is lost: each is on every member once the fleet converged;
- the fleet converges again: the rollout completes (or every member runs the new policy)
  and every MarketplaceNode is Ready;
- the disruption budget holds (`bench.chaos_report.budget_breaches` on the pod watch);
- the fault shows in status, Events and metrics, where the operator can see it.

`make test` runs the short form (`SHORT`); `make chaos` sets MARKETPLACE_CHAOS=full and
MARKETPLACE_CHAOS_RESULTS, and renders the results with `python -m bench.chaos_report`.
"""

from __future__ import annotations

import collections
import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path

import chaos
import loadgen
import pytest
from e2e_helpers import OperatorProcess, wait_for, wait_ready
from marketplace_node.api_client import CliError
from marketplace_operator import k8s
from rollout_helpers import make_fleet, pod_uids, request_restart, wait_rollout

from bench.chaos_report import Outcome, Sample, budget_breaches, down_seconds, most_down
from tests.support.net import free_port

FLEET = "chaos"
SIZE = 3
MAX_UNAVAILABLE = 1
SITUATIONS = ("rollout", "policy change")
# The short form (`make test`, ~4 min under load): one node fault and one control-plane
# fault. The node fault is the full data volume (it covers the most: the tmpfs claim, the
# node's 507, the operator's Degraded); node SIGKILL stays in the full form, operator
# kills during rollouts have their own test (test_rollout_chaos.py).
SHORT = {("data volume full", "policy change"), ("kube-apiserver restart", "policy change")}
FULL = os.environ.get("MARKETPLACE_CHAOS") == "full"
RESULTS = os.environ.get("MARKETPLACE_CHAOS_RESULTS")
# These must show in metrics at least: the operator cannot write status or Events while
# the API server or etcd is away (it counts the calls they did not answer), and a
# SIGKILLed operator writes nothing (its counters start again from zero: a reset, as
# Prometheus' `resets()` sees it). docs/operator.md, "The chaos suite".
CONTROL_PLANE = {"kube-apiserver restart", "etcd kill -9", "operator SIGKILL"}
# An etcd crash that nothing the operator did met, and that the API server's readiness
# probing missed, shows in etcd's own metrics (chaos.etcd_started).

# The Events a rollout posts about a member on its own: not a fault's trace.
ROLLOUT_REASONS = {"Replacing", "PodDeleted", "Drained", "DrainSkipped", "ChildChanged"}

SCENARIOS = [
    pytest.param(
        fault,
        situation,
        id=f"{fault}-{situation}".replace(" ", "-"),
        marks=() if FULL or (fault, situation) in SHORT else pytest.mark.skip("make chaos"),
    )
    for fault in chaos.FAULTS
    for situation in SITUATIONS
]


def _try(publish: Callable[[], str]) -> str | None:
    try:
        return publish()
    except CliError:
        return None


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("fault", "situation"), SCENARIOS)
def test_fault_under_load(
    fault: str,
    situation: str,
    kube: k8s.BlockingKube,
    kubeconfig: str,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    if Path(kubeconfig).resolve() != Path(chaos.local_kubeconfig()).resolve():
        pytest.skip("the chaos suite injects its faults into the local cluster (hack/cluster.sh)")
    metrics_port = free_port()
    operator = operator_factory("--metrics-port", str(metrics_port))
    operator.start()
    spec = chaos.FAULTS[fault]
    member = f"{FLEET}-{SIZE - 1}"
    names = make_fleet(
        kube, namespace, FLEET, SIZE, max_unavailable=MAX_UNAVAILABLE,
        member_spec={member: spec.member_spec(namespace, member)} if spec.member_spec else None,
    )  # fmt: skip
    seeder = chaos.Publisher(lambda: [], tmp_path)
    members = itertools.cycle([chaos.address(kube, namespace, n) for n in names])
    # Right after Ready a member may not know enough peers yet for a durable publish (503
    # insufficient_replicas, for minutes at times: docs/operator.md): each member in turn.
    package = wait_for(
        lambda: _try(lambda: seeder.publish(next(members), "1.0.0", name="chaosread")),
        timeout=180, interval=1, what="a first acknowledged publish",
    )  # fmt: skip
    wait_for(
        lambda: chaos.holders(kube, namespace, names, package) == SIZE,
        timeout=180, interval=0.5, what="the first package on every member",
    )  # fmt: skip
    target = chaos.Target(kube, namespace, member, operator)
    before = pod_uids(kube, namespace, names)
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

    with (
        loadgen.FleetWatch(kubeconfig, namespace, FLEET, names) as watch,
        loadgen.LoadGenerator(
            watch.ready_addresses, package_id=package, keyword="chaosread", rate=10
        ) as load,
        chaos.Publisher(watch.ready_addresses, tmp_path) as publisher,
        chaos.Observer(kube, namespace, metrics_url) as observer,
        chaos.Supervisor() as supervisor,
    ):
        time.sleep(3)  # steady state first
        if situation == "rollout":
            request_restart(kube, namespace, names)
        else:
            chaos.change_policy(kube, namespace, FLEET)
        time.sleep(1.5)  # the situation is under way
        etcd_started = chaos.etcd_started()
        fault_at, fault_wall = time.monotonic(), time.time()
        spec.inject(target)
        healed_at = time.monotonic()
        stuck = ""  # why the fleet did not converge, if it did not
        try:
            if situation == "rollout":
                wait_rollout(kube, namespace, FLEET, names, before, timeout=300)
            else:
                wait_for(
                    lambda: chaos.policy_everywhere(kube, namespace, FLEET, names),
                    timeout=300, interval=0.5, what="the policy on every member",
                )  # fmt: skip
            wait_ready(kube, namespace, names, timeout=300)
        except pytest.fail.Exception as exc:  # still recorded: a row of the table
            stuck = str(exc)[:300]
        converged_at = time.monotonic()
        recovery = None if stuck else round(converged_at - fault_at, 1)
        etcd_now = chaos.etcd_started()
        etcd_restarted = None not in (etcd_started, etcd_now) and etcd_now != etcd_started
        time.sleep(2)  # and steady state after
        publisher.stop()
        load.stop()

    acked = publisher.acknowledged
    deadline = time.monotonic() + 90
    missing = list(acked)
    while missing and time.monotonic() < deadline:
        missing = [p for p in missing if chaos.holders(kube, namespace, names, p) < SIZE]
        time.sleep(1)
    lost = [p for p in missing if chaos.holders(kube, namespace, names, p) == 0]

    samples = [Sample(s.at, frozenset(s.unavailable)) for s in watch.samples]
    faulted = frozenset({member}) if spec.node_local else frozenset()
    after = [s for s in samples if s.at >= fault_at]
    breaches = budget_breaches(samples, max_unavailable=MAX_UNAVAILABLE, faulted=faulted)

    events = chaos.events_since(kube, namespace, fault_wall)
    warnings = sorted(
        {f"{e['involvedObject']['kind']}/{e['reason']}" for e in events if e["type"] == "Warning"}
    )
    # A node-local fault may also show as a Normal Event about its member (PhaseChanged).
    about_member = sorted(
        {e["reason"] for e in events if e["involvedObject"].get("name") == member} - ROLLOUT_REASONS
    )
    unready = observer.troubled(fault_at, member if spec.node_local else None)
    if situation == "rollout":  # the rollout's own Replacing/Starting is not the fault
        unready = [u for u in unready if u[1] not in ("Replacing", "Starting")]
    seen = {
        "status": bool(unready),
        "events": bool(warnings or (spec.node_local and about_member)),
        "metrics": observer.metric_grew(fault_at, "marketplace_operator_admin_api_errors_total")
        or observer.metric_grew(fault_at, "marketplace_operator_api_unavailable_total")
        or observer.metric_grew(
            fault_at, "marketplace_operator_reconciliations_total", exclude='outcome="ok"'
        )
        or observer.degraded_gauge(fault_at)
        or observer.counter_reset(fault_at, "marketplace_operator_reconciliations_total")
        or etcd_restarted,
    }
    seen_in = tuple(k for k, v in seen.items() if v)
    # How the fleet refused publishes (error codes, counted): typed, never a 500.
    refusals = collections.Counter(chaos.refusal_code(r) for r in publisher.refused)
    expected = spec.refusal is None or refusals[spec.refusal] > 0
    shows = len(seen_in) == len(seen) or (fault in CONTROL_PLANE and "metrics" in seen_in)
    passed = (
        not stuck and not lost and not missing and not breaches and shows
        and not refusals["internal"] and expected
    )  # fmt: skip
    outcome = Outcome(
        fault=fault,
        situation=situation,
        passed=passed,
        recovery_seconds=recovery,
        acknowledged=len(acked),
        lost=len(lost),
        requests=load.report.total,
        failed_requests=len(load.report.failures),
        most_down=most_down(samples),
        max_unavailable=MAX_UNAVAILABLE,
        seen_in=seen_in,
        note=(f"DID NOT CONVERGE: {stuck}; " if stuck else "")
        + f"healed after {healed_at - fault_at:.0f} s; warnings {', '.join(warnings) or '-'}"
        + (
            f"; refused {', '.join(f'{c} x{n}' for c, n in refusals.most_common())}"
            if refusals
            else ""
        )
        + (f"; {member}: {', '.join(about_member)}" if spec.node_local and about_member else "")
        + (f"; restarted {', '.join(supervisor.restarted)}" if supervisor.restarted else "")
        + "".join(
            f"; {b.why} at +{b.at - fault_at:.0f} s ("
            + ", ".join(f"{m}: {watch.why_down(m, b.at)}" for m in sorted(b.unavailable))
            + ")"
            for b in breaches[:1]
        )
        + "".join(
            f"; {m} down {down:.1f} s"
            for m in names
            if m not in faulted and (down := down_seconds(after, m, until=converged_at)) > 0
        ),
    )
    print(outcome.model_dump_json())
    if RESULTS:
        with Path(RESULTS).open("a") as out:
            out.write(outcome.model_dump_json() + "\n")
    assert not stuck, stuck
    assert acked, f"no publish was acknowledged: {publisher.refused[:5]}"
    assert not lost, f"acknowledged publishes lost: {lost}"
    assert not missing, "publishes not on every member after convergence: " + "; ".join(
        f"{p} lacks {chaos.lacking(kube, namespace, names, p)}" for p in missing[:5]
    )
    assert not breaches, breaches
    assert shows, f"{fault} showed only in {seen_in}; unready {unready[:5]}; events {warnings}"
    assert not refusals["internal"], f"publishes answered 500: {publisher.refused[:5]}"
    assert expected, f"no publish was refused {spec.refusal}: {dict(refusals)}"
