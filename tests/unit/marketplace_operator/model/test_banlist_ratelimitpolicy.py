"""The BanList and RateLimitPolicy models refuse what the CRD's CEL rules refuse."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketplace_operator import crdgen
from marketplace_operator.model import banlist, ratelimitpolicy
from marketplace_operator.model.banlist import (
    MAX_ENTRIES_PER_OBJECT,
    BanListEntry,
    BanListSpec,
    parse_duration,
)
from marketplace_operator.model.ratelimitpolicy import RateLimitPolicySpec
from marketplace_protocol.admin import Escalation
from pydantic import ValidationError

PEER = "peerAAAAAAAA"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({}, "exactly one of peerId, cidr"),
        ({"peerId": PEER, "cidr": "10.0.0.0/8"}, "exactly one of peerId, cidr"),
        ({"cidr": "10.0.0.300/8"}, "does not appear to be"),
        ({"cidr": "not-a-network"}, "does not appear to be"),
        ({"peerId": "short"}, "pattern"),
        ({"peerId": PEER, "duration": "1h", "expiresAt": "2030-01-01T00:00:00Z"}, "at most one"),
        ({"peerId": PEER, "duration": "1 hour"}, "pattern"),
        ({"peerId": PEER, "duration": "0s"}, "positive"),
        ({"peerId": PEER, "duration": "100000h"}, "3650 days"),
        ({"peerId": PEER, "action": "maybe"}, "ban"),
        ({"peerId": PEER, "reason": "x" * 257}, "256"),
        ({"peerId": PEER, "colour": "red"}, "Extra inputs"),
        ({"peerId": PEER, "name": "hello-tool"}, "exactly one of peerId, cidr"),
        ({"name": "hello-tool", "publisher": "mp" + "a" * 52}, "exactly one of peerId, cidr"),
        ({"digest": "ABC"}, "pattern"),
        ({"package": "hello-tool"}, "pattern"),  # a version is required
        ({"package": "hello-tool@"}, "pattern"),
        ({"name": "hello tool"}, "pattern"),
    ],
)
def test_invalid_entries_are_refused(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        BanListEntry.model_validate(fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"peerId": PEER},
        {"cidr": "203.0.113.0/24", "duration": "90m"},
        {"cidr": "2001:db8::/32", "expiresAt": "2030-01-01T00:00:00Z"},
        {"peerId": PEER, "action": "allow", "reason": "false positive"},
        {"digest": "ab" * 32, "reason": "malware"},
        {"package": "hello-tool@1.0.0", "duration": "24h"},
        {"name": "hello-tool", "action": "allow"},
        {"publisher": "mp" + "a" * 52},
    ],
)
def test_valid_entries_are_accepted(fields: dict[str, Any]) -> None:
    assert BanListEntry.model_validate(fields).model_dump(by_alias=True, exclude_none=True)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h30m", 5400), ("250ms", 0.25), ("1.5h", 5400), ("2h0m1s", 7201)],
)
def test_durations_parse_like_go(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@given(st.integers(min_value=1, max_value=10_000), st.sampled_from(["s", "m", "h"]))
def test_duration_is_proportional_to_its_unit(n: int, unit: str) -> None:
    factor = {"s": 1, "m": 60, "h": 3600}[unit]
    if n * factor > 3650 * 86400:
        with pytest.raises(ValueError, match="3650"):
            parse_duration(f"{n}{unit}")
    else:
        assert parse_duration(f"{n}{unit}").total_seconds() == n * factor


def test_cidr_target_is_canonical() -> None:
    a = BanListEntry.model_validate({"cidr": "10.1.2.3/8"})
    b = BanListEntry.model_validate({"cidr": "10.0.0.0/8"})
    assert a.target == b.target == "cidr:10.0.0.0/8"


def test_entries_are_capped_per_object() -> None:
    entries = [{"peerId": f"peer{i:08d}"} for i in range(MAX_ENTRIES_PER_OBJECT + 1)]
    with pytest.raises(ValidationError, match=str(MAX_ENTRIES_PER_OBJECT)):
        BanListSpec.model_validate({"entries": entries})
    BanListSpec.model_validate({"entries": entries[:-1]})


@pytest.mark.parametrize("fleet", ["Blue", "-a", "a" * 64, "a b", "**"])
def test_fleet_must_be_a_dns_label_or_star(fleet: str) -> None:
    with pytest.raises(ValidationError):
        BanListSpec.model_validate({"fleet": fleet})


def test_escalation_first_ban_must_not_exceed_max() -> None:
    with pytest.raises(ValidationError, match="firstBanSeconds must not exceed maxBanSeconds"):
        RateLimitPolicySpec.model_validate(
            {"escalation": {"firstBanSeconds": 100, "maxBanSeconds": 10}}
        )
    spec = RateLimitPolicySpec.model_validate({"escalation": {"firstBanSeconds": 100}})
    assert spec.escalation.first_ban_seconds == 100


@pytest.mark.parametrize(
    "spec",
    [
        {"perPeer": {"search": {"rate": 0, "burst": 1}}},
        {"perPeer": {"search": {"rate": 1}}},
        {"perPeer": {"teleport": {"rate": 1, "burst": 1}}},
        {"global": {"rate": 1, "burst": 0}},
        {"maxPendingQueries": 0},
        {"priority": 1001},
        {"escalation": {"backoffFactor": 0.5}},
        {"escalation": {"tarpitSeconds": -0.5}},
        {"escalation": {"tarpitSeconds": 31}},
    ],
)
def test_invalid_rate_limit_policies_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RateLimitPolicySpec.model_validate(spec)


@pytest.mark.parametrize("seconds", [-0.01, 0, 0.25, 30, 30.01])
def test_tarpit_bounds_match_the_node(seconds: float) -> None:
    """A tarpitSeconds the API server would accept is one every node accepts, and back."""

    def accepts(validate: Callable[[], object]) -> bool:
        try:
            validate()
        except ValidationError:
            return False
        return True

    by_operator = accepts(
        lambda: RateLimitPolicySpec.model_validate({"escalation": {"tarpitSeconds": seconds}})
    )
    by_node = accepts(lambda: Escalation.model_validate({"tarpitSeconds": seconds}))
    assert by_operator == by_node == (0 <= seconds <= 30)


def test_crd_bounds_tarpit_seconds_and_explains_it() -> None:
    schema = crdgen.openapi_schema(ratelimitpolicy.CRD)
    escalation = schema["properties"]["spec"]["properties"]["escalation"]["properties"]
    tarpit = escalation["tarpitSeconds"]
    assert (tarpit["minimum"], tarpit["maximum"]) == (0, 30)
    assert "retries" in tarpit["description"]


def test_fields_set_names_what_a_policy_sets() -> None:
    spec = RateLimitPolicySpec.model_validate(
        {
            "perPeer": {"fetch": {"rate": 1, "burst": 2}},
            "perPublisher": {"rate": 0.1, "burst": 5},
            "global": {"rate": 5, "burst": 5},
            "escalation": {"threshold": 3},
        }
    )
    assert spec.fields_set() == ["fetch", "perPublisher", "global", "escalation"]
    assert RateLimitPolicySpec().fields_set() == []


def _rules(schema: dict[str, Any]) -> list[str]:
    found = [r["rule"] for r in schema.get("x-kubernetes-validations", [])]
    for sub in schema.get("properties", {}).values():
        found += _rules(sub)
    if "items" in schema:
        found += _rules(schema["items"])
    return found


def test_crd_carries_the_cel_rules_and_bounds() -> None:
    bl = crdgen.openapi_schema(banlist.CRD)
    entries = bl["properties"]["spec"]["properties"]["entries"]
    assert entries["maxItems"] == MAX_ENTRIES_PER_OBJECT
    assert set(_rules(bl)) == {
        "(has(self.peerId) ? 1 : 0) + (has(self.cidr) ? 1 : 0) + (has(self.digest) ? 1 : 0)"
        " + (has(self.package) ? 1 : 0) + (has(self.name) ? 1 : 0)"
        " + (has(self.publisher) ? 1 : 0) == 1",
        "!has(self.cidr) || isCIDR(self.cidr)",
        "!(has(self.duration) && has(self.expiresAt))",
        "duration(self) > duration('0s') && duration(self) <= duration('87600h')",
    }
    rlp = crdgen.openapi_schema(ratelimitpolicy.CRD)
    assert any("firstBanSeconds <= self.maxBanSeconds" in r for r in _rules(rlp))


def test_user_entries_get_no_defaulted_provenance() -> None:
    """Provenance has a required field, so the API server does not default it to {}."""
    bl = crdgen.openapi_schema(banlist.CRD)
    item = bl["properties"]["spec"]["properties"]["entries"]["items"]
    assert "default" not in item["properties"]["provenance"]
