"""Status writes (what users wait on at once, details batched, peer churn paced) and
which phase changes are Events."""

from __future__ import annotations

from typing import Any

import pytest
from marketplace_operator import nodeloop
from marketplace_operator.model.mnode import Phase
from marketplace_operator.nodeloop import (
    DETAIL_STATUS_INTERVAL_SECONDS,
    PEERS_STATUS_INTERVAL_SECONDS,
    announces_phase,
    intent,
    patch_kind,
    status_delay,
)

PEERS = PEERS_STATUS_INTERVAL_SECONDS
DETAIL = DETAIL_STATUS_INTERVAL_SECONDS
READY_TRUE = [{"type": "Ready", "status": "True", "reason": "Joined", "message": "a"}]
READY_FALSE = [{"type": "Ready", "status": "False", "reason": "NotJoined", "message": "b"}]
OLD = {"phase": "Starting", "conditions": READY_FALSE}


@pytest.mark.parametrize(
    ("patch", "since", "delay"),
    [
        ({}, None, None),  # nothing changed
        ({}, PEERS, None),
        ({"peers": 3}, None, 0.0),  # never written by this operator: write
        ({"podIP": "10.0.0.1"}, None, 0.0),
        ({"peers": 3}, 1.0, PEERS - 1.0),  # peer churn right after a write: wait
        ({"peers": 3, "connectedPeers": ["a", "b", "c"]}, 2.0, PEERS - 2.0),
        ({"connectedPeers": ["a"]}, PEERS, 0.0),  # the interval is over
        ({"peers": 3, "phase": "Ready"}, 0.1, 0.0),  # the phase: at once
        ({"observedGeneration": 2}, 0.1, 0.0),
        ({"policyVersion": 7}, 0.1, 0.0),
        ({"policyHash": "abc"}, 0.1, 0.0),
        ({"conditions": READY_TRUE}, 0.0, 0.0),  # a condition's status flipped
        # Details: batched into one write a second after the last.
        ({"podIP": "10.0.0.1"}, 0.25, DETAIL - 0.25),
        ({"peerId": "mp1", "podName": "n1", "peers": 2}, 0.5, DETAIL - 0.5),
        ({"podIP": "10.0.0.1"}, DETAIL + 3, 0.0),
        # Only a condition's reason or message changed: a detail too.
        ({"conditions": [{**READY_FALSE[0], "message": "c"}]}, 0.5, DETAIL - 0.5),
    ],
)
def test_status_delay(patch: dict[str, Any], since: float | None, delay: float | None) -> None:
    got = status_delay(patch, OLD, since)
    if delay is None:
        assert got is None
    else:
        assert got == pytest.approx(delay)


@pytest.mark.parametrize(
    ("patch", "since", "fleet", "delay"),
    [
        ({"podIP": "10.0.0.1"}, 0.5, 0.0, DETAIL - 0.5),  # a small fleet: the base
        ({"podIP": "10.0.0.1"}, 0.5, 10.0, 9.5),  # 1,000 nodes at 100 writes a second
        ({"peers": 3}, 1.0, 10.0, 9.0),
        ({"peers": 3}, 1.0, 2.0, PEERS - 1.0),  # never shorter than the kind's own
        ({"phase": "Ready", "podIP": "10.0.0.1"}, 0.5, 10.0, 0.0),  # urgent: at once
        ({"podIP": "10.0.0.1"}, None, 10.0, 0.0),  # never written: at once
    ],
)
def test_paced_writes_wait_for_the_fleet_interval(
    patch: dict[str, Any], since: float | None, fleet: float, delay: float
) -> None:
    assert status_delay(patch, OLD, since, fleet) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("patch", "kind"),
    [
        ({"phase": "Ready", "peers": 3}, "urgent"),
        ({"conditions": READY_TRUE}, "urgent"),
        ({"peers": 3}, "peers"),
        ({"peers": 3, "connectedPeers": ["a"]}, "peers"),
        ({"peers": 3, "podIP": "10.0.0.1"}, "detail"),
        ({"conditions": [{**READY_FALSE[0], "message": "c"}]}, "detail"),
    ],
)
def test_a_status_patch_is_counted_by_what_it_carries(patch: dict[str, Any], kind: str) -> None:
    assert patch_kind(patch, OLD) == kind


def test_a_condition_appearing_is_urgent() -> None:
    assert status_delay({"conditions": READY_FALSE}, {}, 0.1) == 0.0
    assert status_delay({"conditions": READY_FALSE}, None, 0.1) == 0.0


@pytest.mark.parametrize(
    ("previous", "new", "announced"),
    [
        (None, Phase.PENDING, False),  # a new node: its ChildChanged Event says so
        (None, Phase.DEGRADED, True),
        (None, Phase.READY, True),  # e.g. the operator restarted with a fresh status
        (Phase.PENDING, Phase.STARTING, True),
        (Phase.STARTING, Phase.READY, True),
        (Phase.READY, Phase.READY, False),
        (Phase.READY, None, False),
    ],
)
def test_phase_events(previous: Phase | None, new: Phase | None, announced: bool) -> None:
    assert announces_phase(previous, new) is announced


def _mnode(**meta: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "n1", "generation": 1, "resourceVersion": "1"}
    return {"metadata": {**base, **meta}, "spec": {"fleet": "a"}, "status": {"phase": "Ready"}}


def test_only_what_the_reconcile_acts_on_wakes_a_node() -> None:
    before = intent(_mnode())
    # Our own status write: a new resourceVersion and status, nothing to act on.
    own_write = {**_mnode(resourceVersion="2"), "status": {"phase": "Starting"}}
    assert intent(own_write) == before
    assert intent(_mnode(generation=2)) != before  # a spec change
    restart = _mnode(annotations={"marketplace.p2p.dev/restartedAt": "now"})
    assert intent(restart) != before
    assert intent(_mnode(deletionTimestamp="2026-11-25T00:00:00Z")) != before


def test_announcements_are_exact_in_a_small_fleet() -> None:
    assert nodeloop.announcement_fresh_for(3) == 0.0
    assert nodeloop.announcement_fresh_for(99) == 0.0
    assert nodeloop.announcement_fresh_for(1000) == nodeloop.ANNOUNCEMENT_FRESH_SECONDS
