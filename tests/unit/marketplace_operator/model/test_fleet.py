"""The MarketplaceFleet's settings: replication (1 <= minInSync <= factor) and maxUnavailable
(a count or a percentage), in the model and in the CRD's rules, and what they resolve to."""

from __future__ import annotations

from typing import Any

import pytest
from marketplace_operator import crdgen
from marketplace_operator.model import fleet
from marketplace_operator.model.fleet import (
    MAX_UNAVAILABLE_MESSAGE,
    MarketplaceFleetSpec,
    ReplicationSpec,
    resolve_max_unavailable,
)
from marketplace_protocol.admin import Replication
from pydantic import ValidationError


@pytest.mark.parametrize(
    "replication",
    [{"factor": 2, "minInSync": 3}, {"minInSync": 4}, {"factor": 0}, {"minInSync": 0}],
)
def test_replication_outside_one_to_factor_is_refused(replication: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MarketplaceFleetSpec.model_validate({"replication": replication})


@pytest.mark.parametrize(
    ("replication", "wire"),
    [
        ({}, Replication(factor=3, min_in_sync=2)),
        ({"factor": 1}, Replication(factor=1, min_in_sync=1)),
        ({"factor": 5}, Replication(factor=5, min_in_sync=2)),
        ({"factor": 5, "minInSync": 5}, Replication(factor=5, min_in_sync=5)),
    ],
)
def test_nodes_receive_both_numbers_with_the_default_made_explicit(
    replication: dict[str, Any], wire: Replication
) -> None:
    assert ReplicationSpec.model_validate(replication).wire() == wire


def test_the_crd_carries_the_rule_the_model_checks() -> None:
    schema = crdgen.openapi_schema(fleet.CRD)
    replication = schema["properties"]["spec"]["properties"]["replication"]
    rules = [r["rule"] for r in replication["x-kubernetes-validations"]]
    assert rules == ["!has(self.minInSync) || self.minInSync <= self.factor"]
    assert replication["properties"]["factor"]["default"] == 3
    assert "default" not in replication["properties"]["minInSync"]


@pytest.mark.parametrize(
    ("value", "members", "count"),
    [
        (1, 1, 1),
        (1, 0, 1),
        ("10%", 1, 1),  # 0.1 rounds down to 0, and a rollout must proceed
        ("10%", 5, 1),
        ("10%", 19, 1),
        ("10%", 20, 2),
        ("10%", 999, 99),  # rounded down, as a Deployment's maxUnavailable
        ("10%", 1000, 100),
        ("1%", 0, 1),
        ("33%", 10, 3),
        ("100%", 7, 7),
        ("100%", 1000, 1000),
        (100, 1000, 100),
        (1500, 1000, 1500),  # a count above the members: every member may be out
    ],
)
def test_max_unavailable_resolves_against_the_members(
    value: int | str, members: int, count: int
) -> None:
    assert resolve_max_unavailable(value, members) == count
    spec = MarketplaceFleetSpec.model_validate({"maxUnavailable": value})
    assert resolve_max_unavailable(spec.max_unavailable, members) == count


@pytest.mark.parametrize("value", [1, 64, 65, 1000, 100_000, "1%", "10%", "99%", "100%"])
def test_max_unavailable_accepts_counts_and_percentages(value: int | str) -> None:
    assert MarketplaceFleetSpec.model_validate({"maxUnavailable": value}).max_unavailable == value


@pytest.mark.parametrize(
    "value", ["abc", "0%", "150%", "101%", "10", "10.5%", "05%", "%", " 10%", "10%\n", 0, -1]
)
def test_max_unavailable_refuses_anything_else_with_a_clear_message(value: int | str) -> None:
    with pytest.raises(ValidationError, match=MAX_UNAVAILABLE_MESSAGE) as refused:
        MarketplaceFleetSpec.model_validate({"maxUnavailable": value})
    assert refused.value.errors()[0]["loc"] == ("maxUnavailable",)


def test_the_crd_takes_max_unavailable_as_int_or_string_with_its_rule() -> None:
    schema = crdgen.openapi_schema(fleet.CRD)
    field = schema["properties"]["spec"]["properties"]["maxUnavailable"]
    assert field["x-kubernetes-int-or-string"] is True
    assert "type" not in field  # structural without one: the API server checks int|string
    assert "anyOf" not in field
    assert field["default"] == 1
    assert "maximum" not in field
    assert field["maxLength"] == 4  # "100%"; it bounds the rule's estimated cost
    assert field["x-kubernetes-validations"] == [
        {
            "rule": "type(self) == int ? self >= 1 : self.matches('^(100|[1-9][0-9]?)%$')",
            "message": MAX_UNAVAILABLE_MESSAGE,
        }
    ]
    assert f"rule: {MAX_UNAVAILABLE_MESSAGE}" in field["description"]


def test_the_steps_in_flight_are_bounded_by_the_status_list() -> None:
    status = crdgen.openapi_schema(fleet.CRD)["properties"]["status"]["properties"]
    assert status["steps"]["maxItems"] == fleet.MAX_STEPS >= 256
    assert f"at most {fleet.MAX_STEPS} at once" in status["steps"]["description"]
