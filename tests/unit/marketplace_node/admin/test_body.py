"""Property tests of the admin decoders: any bytes either parse or fail as `InvalidInput`."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marketplace_node.admin import body
from marketplace_node.admin.auth import presented_token
from marketplace_protocol import errors
from marketplace_protocol.admin import DrainRequest, Members, PolicyDocument

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=30,
)
policy_like = st.fixed_dictionaries(
    {"version": st.integers(min_value=-5, max_value=2**70)},
    optional={
        "hash": st.text(max_size=100),
        "bans": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "peerId": st.text(max_size=140),
                    "cidr": st.text(max_size=70),
                    "expiresAt": st.text(max_size=30) | st.integers(),
                    "reason": st.text(max_size=300),
                },
            ),
            max_size=5,
        ),
        "rateLimits": json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
@pytest.mark.parametrize("model", [PolicyDocument, Members, DrainRequest])
def test_arbitrary_bytes_parse_or_raise_invalid_input(
    model: type[PolicyDocument | Members | DrainRequest], data: bytes
) -> None:
    message = ""
    try:
        body.parse(model, data)
    except errors.InvalidInput as exc:  # anything else (a 500) fails the test
        message = exc.message
    assert len(message) < 1_000


@settings(max_examples=300, deadline=None)
@given(doc=policy_like)
def test_policy_shaped_documents_parse_or_raise_invalid_input(doc: dict[str, object]) -> None:
    try:
        parsed = body.parse(PolicyDocument, json.dumps(doc).encode())
    except errors.InvalidInput:
        return
    assert parsed.version == doc["version"]
    for ban in parsed.bans:
        assert (ban.peer_id is None) != (ban.cidr is None)


@given(header=st.text(max_size=200))
def test_authorization_header_parsing_never_raises(header: str) -> None:
    token = presented_token(header)
    assert token is None or (token and header.lower().lstrip().startswith("bearer"))
