"""When the operator may turn off kopf's namespace/CRD scanning (see handlers.mnode.configure)."""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from marketplace_operator.handlers.mnode import _INDEXES, configure, gather, may_skip_scanning
from marketplace_operator.settings import Settings


@pytest.mark.parametrize(
    ("namespaces", "all_namespaces", "expected"),
    [
        (["marketplace"], False, True),
        (["team-a", "team-b", "x"], False, True),
        (["a" * 63], False, True),
        ([], True, False),  # cluster-wide: kopf scans no namespaces; CRDs stay watched
        ([], False, False),  # nothing exact to serve
        (["ns-*"], False, False),
        (["ns-?"], False, False),
        (["!kube-system"], False, False),
        (["team-a", "!team-b"], False, False),  # one pattern among names is enough
        (["team-a,team-b"], False, False),  # kopf's comma-separated pattern
        (["myapp-*, !*-pr-*"], False, False),
        (["Team-A"], False, False),  # not a namespace name: leave it to kopf's matching
        (["-team"], False, False),
        (["team-"], False, False),
        (["a" * 64], False, False),
    ],
)
def test_may_skip_scanning(namespaces: list[str], all_namespaces: bool, expected: bool) -> None:
    assert may_skip_scanning(namespaces, all_namespaces=all_namespaces) is expected


@pytest.mark.parametrize(
    ("cfg", "disabled"),
    [
        (Settings(namespaces=[], all_namespaces=False), True),  # watches "default" only
        (Settings(namespaces=["marketplace", "team-b"]), True),
        (Settings(namespaces=["team-*"]), False),
        (Settings(all_namespaces=True), False),
    ],
)
def test_configure_applies_the_decision(cfg: Settings, disabled: bool) -> None:
    settings = kopf.OperatorSettings()
    assert settings.scanning.disabled is False  # kopf's default: scanning on
    configure(settings, cfg)
    assert settings.scanning.disabled is disabled


def test_gather_gives_the_gate_the_other_members_peer_ids_as_a_set() -> None:
    indexes: dict[str, Any] = {name: {} for name in _INDEXES}
    indexes["mnode_peer_ids"] = {("ns", "blue"): [("n1", "mp1"), ("n2", "mp2"), ("n3", "mp3")]}
    views = gather("ns", "n2", "blue", indexes)
    assert views.other_peer_ids == frozenset({"mp1", "mp3"})
    assert views.peer_ids == {"n1": "mp1", "n2": "mp2", "n3": "mp3"}
