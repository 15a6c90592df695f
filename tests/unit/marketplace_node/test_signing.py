"""RFC 9421-subset request signatures: verification, replays, skew, forgeries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketplace_node import signing
from marketplace_protocol import identity
from marketplace_protocol.clock import FakeClock
from marketplace_protocol.errors import (
    BadSignature,
    ReplayedRequest,
    StaleRequest,
    Unauthenticated,
)

NOW = 1_700_000_000


def _signed(ident: identity.Identity, **kw: object) -> dict[str, str]:
    args: dict[str, object] = {
        "method": "POST",
        "path": "/p2p/v1/announce",
        "query": "",
        "body": b"{}",
        "created": NOW,
    }
    args.update(kw)
    return signing.sign_request(ident, **args)  # type: ignore[arg-type]


def _verify(
    headers: dict[str, str],
    replay: signing.ReplayCache,
    *,
    body: bytes = b"{}",
    path: str = "/p2p/v1/announce",
    now: float = NOW,
    query: str = "",
) -> str:
    return signing.verify_request(
        method="POST",
        path=path,
        query=query,
        headers=headers,
        body=body,
        now_wall=now,
        replay=replay,
    )


def test_a_signed_request_verifies_once_then_is_a_replay() -> None:
    ident = identity.Identity.generate()
    replay = signing.ReplayCache(FakeClock())
    headers = _signed(ident)
    assert _verify(headers, replay) == ident.peer_id
    with pytest.raises(ReplayedRequest):
        _verify(headers, replay)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"body": b'{"x":1}'}, BadSignature),
        ({"path": "/p2p/v1/hello"}, BadSignature),
        ({"query": "after=5"}, BadSignature),
        ({"now": NOW + 301}, StaleRequest),
        ({"now": NOW - 301}, StaleRequest),
    ],
)
def test_tampered_or_stale_requests_are_refused(
    change: dict[str, object], error: type[Exception]
) -> None:
    replay = signing.ReplayCache(FakeClock())
    with pytest.raises(error):
        _verify(_signed(identity.Identity.generate()), replay, **change)  # type: ignore[arg-type]


def test_skew_window_edges_are_accepted() -> None:
    replay = signing.ReplayCache(FakeClock())
    ident = identity.Identity.generate()
    _verify(_signed(ident), replay, now=NOW + 300)
    _verify(_signed(ident), replay, now=NOW - 300)


def test_claiming_another_peers_keyid_fails() -> None:
    mallory, alice = identity.Identity.generate(), identity.Identity.generate()
    headers = _signed(mallory)
    headers["Signature-Input"] = headers["Signature-Input"].replace(mallory.peer_id, alice.peer_id)
    with pytest.raises(BadSignature):
        _verify(headers, signing.ReplayCache(FakeClock()))


def test_a_forged_request_does_not_burn_the_nonce() -> None:
    ident = identity.Identity.generate()
    replay = signing.ReplayCache(FakeClock())
    headers = _signed(ident)
    with pytest.raises(BadSignature):
        _verify(headers, replay, body=b"tampered")
    assert _verify(headers, replay) == ident.peer_id


def test_replay_memory_expires_after_the_window() -> None:
    clock = FakeClock()
    replay = signing.ReplayCache(clock)
    replay.check_and_add("k", "n")
    clock.advance(601)
    replay.check_and_add("k", "n")


@given(
    st.dictionaries(
        st.sampled_from(["Signature-Input", "Signature", "Content-Digest"]), st.text(max_size=300)
    )
)
def test_arbitrary_headers_only_ever_fail_as_unauthenticated(headers: dict[str, str]) -> None:
    with pytest.raises(Unauthenticated):
        _verify(headers, signing.ReplayCache(FakeClock()))
