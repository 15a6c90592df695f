"""Status writes: peer-count churn is paced, every other change is written at once."""

from __future__ import annotations

from typing import Any

import pytest
from marketplace_operator.nodeloop import PEERS_STATUS_INTERVAL_SECONDS, status_due

SOON = PEERS_STATUS_INTERVAL_SECONDS / 2
LATER = PEERS_STATUS_INTERVAL_SECONDS


@pytest.mark.parametrize(
    ("patch", "since", "due"),
    [
        ({}, None, False),  # nothing changed
        ({}, LATER, False),
        ({"peers": 3}, None, True),  # never written by this operator: write
        ({"peers": 3}, SOON, False),  # peer churn right after a write: wait
        ({"peers": 3, "connectedPeers": ["a", "b", "c"]}, SOON, False),
        ({"connectedPeers": ["a"]}, LATER, True),  # the interval is over
        ({"peers": 3, "phase": "Ready"}, SOON, True),  # anything else: at once
        ({"conditions": []}, 0.0, True),
        ({"policyVersion": 7}, SOON, True),
    ],
)
def test_status_due(patch: dict[str, Any], since: float | None, due: bool) -> None:
    assert status_due(patch, since) is due
