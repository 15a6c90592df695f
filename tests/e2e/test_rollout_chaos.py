"""SIGKILL the operator at random moments of rollouts: each one completes, never with two
nodes down at once, and without an orphaned or duplicate pod.

Like the chaos suite (issue 15): `make chaos` (MARKETPLACE_CHAOS=full) runs 20 trials,
`make test` a short form of 6. Either way the kill moments are stratified, one at random
in each equal slice of the rollout's span, so a short form still kills early, midway and
late.
"""

from __future__ import annotations

import os
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

TRIALS = 20 if os.environ.get("MARKETPLACE_CHAOS") == "full" else 6
SIZE = 3
SPAN = 12.0  # seconds: a rollout of three nodes takes about 15 s


def kill_delays(rng: random.Random, trials: int) -> list[float]:
    """One delay in each of `trials` equal slices of [0, SPAN)."""
    width = SPAN / trials
    return [(i + rng.random()) * width for i in range(trials)]


# 20 trials of ~16 s each outgrow the suite's default 300 s; every wait inside
# still has its own deadline (150 s per rollout), this only bounds the whole.
@pytest.mark.timeout(60 * TRIALS)
def test_operator_killed_mid_rollout_resumes_safely(
    kube: k8s.BlockingKube, kubeconfig: str, namespace: str, operator: OperatorProcess
) -> None:
    names = make_fleet(kube, namespace, "chaos", SIZE)
    delays = kill_delays(random.Random(20261125), TRIALS)
    kills: list[tuple[float, int]] = []  # (seconds into the rollout, pods replaced by then)
    with loadgen.FleetWatch(kubeconfig, namespace, "chaos", names) as watch:
        for trial, delay in enumerate(delays):
            before = pod_uids(kube, namespace, names)
            seen_before = {n: len(watch.uids_seen[n]) for n in names}
            started = time.monotonic()
            request_restart(kube, namespace, names)
            time.sleep(delay)
            operator.kill()
            kills.append((delay, sum(len(watch.uids_seen[n]) > seen_before[n] for n in names)))
            operator.start()
            wait_rollout(kube, namespace, "chaos", names, before, timeout=150)
            worst = watch.most_unavailable(since=started)
            assert len(worst.unavailable) <= 1, (trial, delay, worst)
            grown = {n: len(watch.uids_seen[n]) - seen_before[n] for n in names}
            assert grown == dict.fromkeys(names, 1), (trial, delay, grown)  # one new pod each
            check_pods_owned(kube, namespace, "chaos", names)
    assert len(kills) == TRIALS
    shown = [(round(delay, 1), replaced) for delay, replaced in kills]
    print(f"{len(kills)} kills (s into the rollout, pods replaced by then): {shown}")
