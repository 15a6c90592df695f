"""`kubectl marketplace ban`: entries validated as the CRD does, added, replaced, removed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from marketplace_kubectl import bans

PEER = "mp" + "a" * 50


def _existing(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "marketplace.p2p.dev/v1alpha1",
        "kind": "BanList",
        "metadata": {
            "name": "abusers",
            "namespace": "ns",
            "uid": "u1",
            "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "team": "sre",
            },
        },
        "spec": {"fleet": "demo", "entries": [], **spec},
        "status": {"entries": 0},
    }


def _entry(**kw: Any) -> Any:
    args: dict[str, Any] = {
        "peer_id": None,
        "cidr": None,
        "reason": "",
        "duration": None,
        "expires_at": None,
    }
    return bans.entry(**{**args, **kw})


def test_a_new_list_is_a_clean_manifest_for_git() -> None:
    new = bans.add(
        bans.manifest("abusers", "ns", None, fleet=None),
        _entry(cidr="203.0.113.0/24", reason="scraping", duration="24h"),
    )
    assert new == {
        "apiVersion": "marketplace.p2p.dev/v1alpha1",
        "kind": "BanList",
        "metadata": {"name": "abusers", "namespace": "ns"},
        "spec": {
            "fleet": "*",
            "entries": [{"cidr": "203.0.113.0/24", "reason": "scraping", "duration": "24h"}],
        },
    }


def test_an_existing_list_loses_server_fields_keeps_user_metadata() -> None:
    base = bans.manifest("abusers", "ns", _existing(), fleet="demo")
    assert base["metadata"] == {
        "name": "abusers",
        "namespace": "ns",
        "annotations": {"team": "sre"},
    }
    assert "status" not in base
    with pytest.raises(bans.BanError, match="fleet 'demo', not 'blue'"):
        bans.manifest("abusers", "ns", _existing(), fleet="blue")


def test_same_target_replaces_in_place_others_append() -> None:
    base = bans.manifest(
        "abusers",
        "ns",
        _existing(entries=[{"cidr": "10.0.0.0/8"}, {"peerId": PEER, "reason": "old"}]),
        fleet=None,
    )
    out = bans.add(base, _entry(peer_id=PEER, reason="new"))
    assert out["spec"]["entries"] == [{"cidr": "10.0.0.0/8"}, {"peerId": PEER, "reason": "new"}]
    out = bans.add(out, _entry(cidr="10.1.2.3/8", reason="same network"))  # canonical target
    assert out["spec"]["entries"][0] == {"cidr": "10.1.2.3/8", "reason": "same network"}
    out = bans.add(out, _entry(cidr="192.0.2.1"))  # one address: its /32
    assert out["spec"]["entries"][-1] == {"cidr": "192.0.2.1/32"}
    assert base["spec"]["entries"][1]["reason"] == "old"  # inputs untouched


def test_remove_drops_the_target_or_says_it_is_not_there() -> None:
    base = bans.manifest(
        "abusers", "ns", _existing(entries=[{"cidr": "192.0.2.1/32"}, {"peerId": PEER}]), fleet=None
    )
    out = bans.remove(base, _entry(cidr="192.0.2.1").target)
    assert out["spec"]["entries"] == [{"peerId": PEER}]
    with pytest.raises(bans.BanError, match=r"no entry for cidr:198\.51\.100\.0/24"):
        bans.remove(out, "cidr:198.51.100.0/24")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "exactly one of peerId, cidr"),
        ({"peer_id": PEER, "cidr": "10.0.0.0/8"}, "exactly one of peerId, cidr"),
        ({"peer_id": "short"}, "String should match pattern"),
        ({"cidr": "10.0.0.0/33"}, "does not appear to be an IPv4 or IPv6 network"),
        ({"cidr": "10.0.0.0/8", "duration": "forever"}, "should match pattern"),
        ({"cidr": "10.0.0.0/8", "duration": "87601h"}, "3650 days"),
    ],
)
def test_bad_flags_are_refused_before_anything_is_sent(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(bans.BanError, match=message):
        _entry(**kw)


def test_allow_entries_and_operator_lists() -> None:
    assert _entry(cidr="10.0.0.0/8", allow=True).action.value == "allow"
    auto = _existing()
    auto["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "marketplace-operator"}
    with pytest.raises(bans.BanError, match="written by the operator"):
        bans.check_user_owned(auto)
    bans.check_user_owned(_existing())
    bans.check_user_owned(None)


def test_rows_resolve_expiry_from_the_lists_creation() -> None:
    bl = _existing(
        entries=[
            {"cidr": "10.0.0.0/8", "duration": "24h", "reason": "r"},
            {"peerId": PEER, "expiresAt": "2026-01-01T01:00:00Z"},
            {
                "cidr": "192.0.2.0/24",
                "provenance": {"nodes": ["a", "b"], "nodeCount": 2, "offences": 7},
            },
        ]
    )
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    rows = bans.rows([bl], now)
    assert rows[0] == ["abusers", "demo", "cidr:10.0.0.0/8", "ban", "r", "in 12h", "user"]
    assert rows[1][5] == "expired"
    assert rows[2][5:] == ["never", "2 node(s)"]
