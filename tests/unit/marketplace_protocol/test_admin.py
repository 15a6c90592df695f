"""Admin wire models: policy documents stay readable by nodes built before `tarpitSeconds`
while it is 1 s, and the one docs/node.md shows is valid."""

from __future__ import annotations

import json

import pytest
from marketplace_protocol.admin import Escalation, PolicyDocument, RateLimits, WireModel
from pydantic import Field, ValidationError

from tests.support import docs


class EscalationBeforeTarpit(WireModel):
    """The escalation block as nodes without `tarpitSeconds` parse it (unknown fields refused)."""

    threshold: int = 20
    window_seconds: float = Field(default=60.0, alias="windowSeconds")
    first_ban_seconds: float = Field(default=60.0, alias="firstBanSeconds")
    backoff_factor: float = Field(default=2.0, alias="backoffFactor")
    max_ban_seconds: float = Field(default=86_400.0, alias="maxBanSeconds")


def escalation_on_the_wire(escalation: Escalation) -> dict[str, object]:
    doc = PolicyDocument(version=1, rate_limits=RateLimits(escalation=escalation))
    wire = json.loads(doc.model_dump_json(by_alias=True))
    return dict(wire["rateLimits"]["escalation"])


def test_the_default_hold_is_left_out_and_an_older_node_reads_the_block() -> None:
    wire = escalation_on_the_wire(Escalation(threshold=5))
    assert "tarpitSeconds" not in wire
    assert EscalationBeforeTarpit.model_validate(wire).threshold == 5


@pytest.mark.parametrize("seconds", [0.0, 0.5, 30.0])
def test_another_hold_is_sent_and_an_older_node_refuses_it(seconds: float) -> None:
    wire = escalation_on_the_wire(Escalation(tarpit_seconds=seconds))
    assert wire["tarpitSeconds"] == seconds
    with pytest.raises(ValidationError, match="tarpitSeconds"):
        EscalationBeforeTarpit.model_validate(wire)


@pytest.mark.parametrize("seconds", [0.0, 1.0, 2.5])
def test_documents_round_trip_whatever_the_hold(seconds: float) -> None:
    doc = PolicyDocument(
        version=3, rate_limits=RateLimits(escalation=Escalation(tarpit_seconds=seconds))
    )
    again = PolicyDocument.model_validate_json(doc.model_dump_json(by_alias=True))
    assert again == doc
    assert again.rate_limits.escalation.tarpit_seconds == seconds


def test_the_documented_policy_document_is_valid_and_spells_out_the_defaults() -> None:
    """docs/node.md, "Policy": the example parses, and its rateLimits are the defaults."""
    text = docs.read("node.md")
    section = text.split("## Policy: rate limits, bans, escalation", 1)[1]
    example = section.split("```json\n", 1)[1].split("```", 1)[0]
    doc = PolicyDocument.model_validate_json(example)
    assert doc.rate_limits == RateLimits()
    assert len(doc.bans) == 2
