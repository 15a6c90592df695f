"""RFC 9421-subset request signatures: verification, replays, skew, forgeries; RFC 9421's own
Ed25519 example; both directions against `http-message-signatures` (an independent
implementation, a test dependency only)."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)
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


# -- RFC 9421's own Ed25519 example, and an independent implementation -------------------

# RFC 9421 Appendix B.1.4: the test key test-key-ed25519.
RFC_KEY = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
"""
# Appendix B.2.6: the covered components of the test request, the signature base (without
# RFC 8792 line wrapping) and the signature.
RFC_B26_COVERED = [
    ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
    ("@method", "POST"),
    ("@path", "/foo"),
    ("@authority", "example.com"),
    ("content-type", "application/json"),
    ("content-length", "18"),
]
RFC_B26_BASE = (
    b'"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    b'"@method": POST\n'
    b'"@path": /foo\n'
    b'"@authority": example.com\n'
    b'"content-type": application/json\n'
    b'"content-length": 18\n'
    b'"@signature-params": ("date" "@method" "@path" "@authority" "content-type" '
    b'"content-length");created=1618884473;keyid="test-key-ed25519"'
)
RFC_B26_SIGNATURE = (
    "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw=="
)


def test_the_signature_base_and_signature_of_rfc_9421_b_2_6() -> None:
    params = signing.signature_params(
        [name for name, _ in RFC_B26_COVERED], created=1618884473, keyid="test-key-ed25519"
    )
    base = signing.signature_base(RFC_B26_COVERED, params)
    assert base == RFC_B26_BASE
    key = identity.from_pem(RFC_KEY)
    assert base64.b64encode(key.sign(base)).decode() == RFC_B26_SIGNATURE  # Ed25519: deterministic
    identity.verify(key.peer_id, base64.b64decode(RFC_B26_SIGNATURE), base)


def test_content_digest_is_rfc_9530s() -> None:
    """RFC 9530 §2's example body and its SHA-256 Content-Digest."""
    expected = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    assert signing.content_digest(b'{"hello": "world"}') == expected


class _Keys(HTTPSignatureKeyResolver):
    """http-message-signatures' key lookup: the key id is the peer id, as ours."""

    def __init__(self, ident: identity.Identity) -> None:
        self.ident = ident

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey:
        return identity.public_key_of(key_id)

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        assert key_id == self.ident.peer_id
        key = serialization.load_pem_private_key(self.ident.to_pem(), password=None)
        assert isinstance(key, Ed25519PrivateKey)
        return key


def _prepared(path_and_query: str, body: bytes, headers: dict[str, str]) -> Any:
    url = f"http://127.0.0.1:7070{path_and_query}"
    return requests.Request("POST", url, data=body, headers=headers).prepare()


@pytest.mark.parametrize(
    ("path", "query"), [("/p2p/v1/announce", ""), ("/p2p/v1/changes", "after=5&limit=10")]
)
def test_http_message_signatures_verifies_what_we_sign(path: str, query: str) -> None:
    ident = identity.Identity.generate()
    body = b'{"kind": "package"}'
    headers = signing.sign_request(
        ident, method="POST", path=path, query=query, body=body, created=int(time.time())
    )
    message = _prepared(path + (f"?{query}" if query else ""), body, headers)
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519, key_resolver=_Keys(ident)
    )
    (result,) = verifier.verify(message, body=body, require_components=signing.COMPONENTS)
    assert result.parameters["keyid"] == ident.peer_id
    covered = [component.strip('"') for component in result.covered_components]
    assert covered == [*signing.COMPONENTS, "@signature-params"]


def test_we_verify_what_http_message_signatures_signs() -> None:
    """Its parameters come in another order (created, keyid, alg, nonce): RFC 9421 allows any."""
    ident = identity.Identity.generate()
    body = b'{"kind": "package"}'
    message = _prepared("/p2p/v1/announce?x=1", body, {})
    HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_Keys(ident)).sign(
        message,
        key_id=ident.peer_id,
        created=datetime.fromtimestamp(NOW, tz=UTC),
        nonce="00112233445566778899aabbccddeeff",
        label="theirs",
        covered_component_ids=signing.COMPONENTS,
        body=body,
    )
    sender = _verify(
        dict(message.headers), signing.ReplayCache(FakeClock()), body=body, query="x=1"
    )
    assert sender == ident.peer_id
