"""SIGKILL the operator at random moments of rollouts: each one completes, never with two
nodes down at once, and without an orphaned or duplicate pod."""

from __future__ import annotations

import random
import time

import loadgen
import pytest
from e2e_helpers import OperatorProcess
from marketplace_operator import k8s
from rollout_helpers import (
    check_pods_owned,
    make_fleet,
    pod_uids,
    request_restart,
    wait_rollout,
)

TRIALS = 20
SIZE = 3


# 20 trials of ~16 s each outgrow the suite's default 300 s; every wait inside
# still has its own deadline (150 s per rollout), this only bounds the whole.
@pytest.mark.timeout(1200)
def test_operator_killed_mid_rollout_resumes_safely(
    kube: k8s.BlockingKube, kubeconfig: str, namespace: str, operator: OperatorProcess
) -> None:
    names = make_fleet(kube, namespace, "chaos", SIZE)
    rng = random.Random(20261125)
    kills: list[float] = []
    with loadgen.FleetWatch(kubeconfig, namespace, "chaos", names) as watch:
        for trial in range(TRIALS):
            before = pod_uids(kube, namespace, names)
            seen_before = {n: len(watch.uids_seen[n]) for n in names}
            started = time.monotonic()
            request_restart(kube, namespace, names)
            delay = rng.uniform(0.0, 12.0)  # a rollout of three nodes takes about 15 s
            time.sleep(delay)
            operator.kill()
            kills.append(delay)
            operator.start()
            wait_rollout(kube, namespace, "chaos", names, before, timeout=150)
            worst = watch.most_unavailable(since=started)
            assert len(worst.unavailable) <= 1, (trial, delay, worst)
            grown = {n: len(watch.uids_seen[n]) - seen_before[n] for n in names}
            assert grown == dict.fromkeys(names, 1), (trial, delay, grown)  # one new pod each
            check_pods_owned(kube, namespace, "chaos", names)
    assert len(kills) >= 20
    print(f"{len(kills)} kills at {sorted(round(k, 1) for k in kills)} s into rollouts")
