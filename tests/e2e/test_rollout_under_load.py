"""A full rolling restart of a 5-node fleet under steady client load: nothing fails.

The load generator sends searches and fetches to ready endpoints only, as a load
balancer would; a watch on the fleet's pods records how many members were out after
every event. The rollout must finish with zero failed requests, never more than one
node unavailable, and every pod replaced exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path

import loadgen
from e2e_helpers import OperatorProcess
from marketplace_operator import k8s
from rollout_helpers import (
    check_pods_owned,
    events,
    make_fleet,
    pod_uids,
    publish_everywhere,
    request_restart,
    wait_rollout,
)

SIZE = 5


def test_full_rollout_under_load_fails_no_request(
    kube: k8s.BlockingKube,
    kubeconfig: str,
    namespace: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    names = make_fleet(kube, namespace, "load", SIZE)
    package_id = publish_everywhere(kube, namespace, names, tmp_path, keyword="steady")
    before = pod_uids(kube, namespace, names)

    with loadgen.FleetWatch(kubeconfig, namespace, "load", names) as watch:
        with loadgen.LoadGenerator(
            watch.ready_addresses, package_id=package_id, keyword="steady", rate=30
        ) as load:
            time.sleep(2)  # steady state first
            started = time.monotonic()
            request_restart(kube, namespace, names)
            after = wait_rollout(kube, namespace, "load", names, before, timeout=240)
            took = time.monotonic() - started
            time.sleep(2)  # and steady state after
        report = load.report

    assert report.total > 30 * took * 0.5, report.summary()  # the load really ran
    assert report.failures == [], report.summary()
    worst = watch.most_unavailable(since=started)
    assert len(worst.unavailable) <= 1, worst
    assert all(watch.uids_seen[n] == [before[n], after[n]] for n in names), watch.uids_seen
    check_pods_owned(kube, namespace, "load", names)
    reasons = [e["reason"] for e in events(kube, namespace, "MarketplaceFleet", "load")]
    assert reasons.count("RolloutStepStarted") == SIZE, reasons
    assert "RolloutComplete" in reasons
    print(f"rollout of {SIZE} nodes took {took:.1f}s; {report.summary()}")
