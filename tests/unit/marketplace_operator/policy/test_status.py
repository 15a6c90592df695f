"""Status of BanLists and RateLimitPolicies: convergence counts, capped lagging, conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from marketplace_operator.model.common import Condition
from marketplace_operator.policy.status import FleetView, object_status

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def conditions(status: dict[str, object]) -> dict[str, dict[str, str]]:
    return {c["type"]: c for c in status["conditions"]}  # type: ignore[attr-defined]


def test_converged_fleets() -> None:
    status = object_status(
        generation=3,
        fleets=[
            FleetView("blue", 7, ("a", "b"), ("a", "b")),
            FleetView("green", 4, ("c",), ("c",)),
        ],
        problem=None,
        previous_conditions=[],
        now=NOW,
    )
    assert status["observedGeneration"] == 3
    assert status["fleetPolicyVersion"] == 4
    assert status["convergedNodes"] == "3/3"
    assert [f["fleet"] for f in status["fleets"]] == ["blue", "green"]
    cond = conditions(status)
    assert cond["Ready"]["status"] == "True"
    assert "blue: v7" in cond["Ready"]["message"]
    assert cond["PolicyConverged"]["status"] == "True"


def test_lagging_nodes_are_named_and_capped() -> None:
    nodes = tuple(f"n{i:02d}" for i in range(15))
    status = object_status(
        generation=1,
        fleets=[FleetView("blue", 2, nodes, nodes[:3])],
        problem=None,
        previous_conditions=[],
        now=NOW,
    )
    assert status["convergedNodes"] == "3/15"
    assert status["fleets"][0]["lagging"] == list(nodes[3:13])
    message = conditions(status)["PolicyConverged"]["message"]
    assert message.startswith("3/15 nodes applied")
    assert "n03, n04" in message
    assert message.endswith("and 2 more")


def test_a_problem_makes_both_conditions_false() -> None:
    status = object_status(
        generation=1,
        fleets=[FleetView("blue", 2, ("a",), ("a",))],
        problem="merged limits are invalid",
        previous_conditions=[],
        now=NOW,
    )
    cond = conditions(status)
    assert cond["Ready"]["status"] == "False"
    assert cond["Ready"]["reason"] == "CannotApply"
    assert cond["Ready"]["message"] == "merged limits are invalid"
    assert cond["PolicyConverged"]["status"] == "False"


def test_no_fleet_yet() -> None:
    status = object_status(generation=1, fleets=[], problem=None, previous_conditions=[], now=NOW)
    assert status["fleetPolicyVersion"] is None
    assert status["convergedNodes"] == "0/0"
    assert conditions(status)["Ready"]["reason"] == "NoNodes"


def test_transition_time_moves_only_when_the_status_flips() -> None:
    fleets = [FleetView("blue", 2, ("a",), ("a",))]
    first = object_status(
        generation=1, fleets=fleets, problem=None, previous_conditions=[], now=NOW
    )
    previous = [Condition.model_validate(c) for c in first["conditions"]]
    later = NOW + timedelta(minutes=5)
    same = object_status(
        generation=1, fleets=fleets, problem=None, previous_conditions=previous, now=later
    )
    assert same == first
    flipped = object_status(
        generation=2,
        fleets=[FleetView("blue", 3, ("a",), ())],
        problem=None,
        previous_conditions=previous,
        now=later,
    )
    cond = conditions(flipped)
    assert cond["PolicyConverged"]["lastTransitionTime"] == "2026-11-25T12:05:00Z"
    assert cond["Ready"]["lastTransitionTime"] == "2026-11-25T12:00:00Z"
