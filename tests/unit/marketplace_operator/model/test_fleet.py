"""The MarketplaceFleet's replication setting: 1 <= minInSync <= factor, in the model and
in the CRD's CEL rule, and what the nodes receive."""

from __future__ import annotations

from typing import Any

import pytest
from marketplace_operator import crdgen
from marketplace_operator.model import fleet
from marketplace_operator.model.fleet import MarketplaceFleetSpec, ReplicationSpec
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
