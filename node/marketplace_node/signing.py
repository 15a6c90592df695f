"""Peer request signatures: a documented subset of RFC 9421 (HTTP Message Signatures) with Ed25519.

Why our own subset: the maintained `http-message-signatures` package targets
`requests`-style message objects and would need adapters on both the aiohttp
client and server side; the subset below is small enough to read in one go and
is wire-compatible with RFC 9421 for what it covers.

Every peer request carries (RFC 9421 §2, §4; RFC 9530 for the digest)::

    Content-Digest: sha-256=:<base64 sha256(body)>:
    Signature-Input: sig1=("@method" "@path" "@query" "content-digest")
        ;created=<unix s>;nonce="<hex>";keyid="<peer id>";alg="ed25519"   (one line on the wire)
    Signature: sig1=:<base64 Ed25519 signature of the signature base>:

The signature base is the RFC 9421 one: one `"<component>": <value>` line per
covered component and a final `"@signature-params": <inner list>` line.
`keyid` is the sender's self-certifying peer id (see `identity`), so no key
lookup is needed. The receiver refuses, with typed errors:

* missing or malformed headers, a wrong digest or signature → `BadSignature`;
* `created` outside now ± `CLOCK_SKEW_SECONDS` (wall clock, used only for
  this comparison) → `StaleRequest`;
* a `(keyid, nonce)` seen within the window → `ReplayedRequest`.

The replay cache is bounded (`NONCE_CACHE_MAX`) and keyed on monotonic time;
nonces are recorded only after the signature verified, so forgeries cannot
fill it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import sys
from collections.abc import Mapping

from marketplace_protocol import identity
from marketplace_protocol.clock import Clock
from marketplace_protocol.errors import BadSignature, ReplayedRequest, StaleRequest

from marketplace_node import limits
from marketplace_node.compact import TtlSet

COMPONENTS = ("@method", "@path", "@query", "content-digest")
_COVERED = "(" + " ".join(f'"{c}"' for c in COMPONENTS) + ")"
_INPUT_RE = re.compile(
    r'^sig1=\("@method" "@path" "@query" "content-digest"\)'
    r";created=(?P<created>[0-9]{1,12})"
    rf';nonce="(?P<nonce>[0-9a-f]{{16,{limits.NONCE_MAX}}})"'
    r';keyid="(?P<keyid>[a-z0-9]{8,128})"'
    r';alg="ed25519"$'
)
_SIGNATURE_RE = re.compile(r"^sig1=:(?P<sig>[A-Za-z0-9+/=]{1,200}):$")


def content_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def _query_component(query: str) -> str:
    return "?" + query


def _params(*, created: int, nonce: str, keyid: str) -> str:
    return f'{_COVERED};created={created};nonce="{nonce}";keyid="{keyid}";alg="ed25519"'


def signature_base(*, method: str, path: str, query: str, digest: str, params: str) -> bytes:
    lines = [
        f'"@method": {method.upper()}',
        f'"@path": {path}',
        f'"@query": {_query_component(query)}',
        f'"content-digest": {digest}',
        f'"@signature-params": {params}',
    ]
    return "\n".join(lines).encode()


def sign_request(
    ident: identity.Identity,
    *,
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    created: int,
    nonce: str | None = None,
) -> dict[str, str]:
    """The three headers that sign one request; `query` is the raw query string without `?`."""
    nonce = nonce or secrets.token_hex(16)
    digest = content_digest(body)
    params = _params(created=created, nonce=nonce, keyid=ident.peer_id)
    base = signature_base(method=method, path=path, query=query, digest=digest, params=params)
    signature = base64.b64encode(ident.sign(base)).decode()
    return {
        "Content-Digest": digest,
        "Signature-Input": "sig1=" + params,
        "Signature": f"sig1=:{signature}:",
    }


class ReplayCache:
    """Bounded memory of recently accepted `(keyid, nonce)` pairs."""

    def __init__(self, clock: Clock, *, window: float = limits.CLOCK_SKEW_SECONDS) -> None:
        self._seen = TtlSet(maxsize=limits.NONCE_CACHE_MAX, ttl=2 * window, timer=clock.monotonic)

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, keyid: str, nonce: str) -> None:
        key = (keyid, nonce)
        if key in self._seen:
            raise ReplayedRequest("request nonce already used")
        self._seen.add(key)


def verify_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    now_wall: float,
    replay: ReplayCache,
    skew: float = limits.CLOCK_SKEW_SECONDS,
) -> str:
    """Check a signed request and return the sender's peer id, or raise a typed error."""
    sig_input = headers.get("Signature-Input", "")
    sig_header = headers.get("Signature", "")
    digest = headers.get("Content-Digest", "")
    if max(len(sig_input), len(sig_header), len(digest)) > limits.SIGNATURE_HEADER_MAX:
        raise BadSignature("signature headers too long")
    match = _INPUT_RE.fullmatch(sig_input)
    sig_match = _SIGNATURE_RE.fullmatch(sig_header)
    if match is None or sig_match is None:
        raise BadSignature("missing or malformed Signature-Input/Signature")
    created = int(match["created"])
    if not abs(now_wall - created) <= skew:
        raise StaleRequest("request `created` outside the accepted clock-skew window")
    if digest != content_digest(body):
        raise BadSignature("Content-Digest does not match the body")
    keyid, nonce = match["keyid"], match["nonce"]
    params = _params(created=created, nonce=nonce, keyid=keyid)
    base = signature_base(method=method, path=path, query=query, digest=digest, params=params)
    try:
        signature = base64.b64decode(sig_match["sig"], validate=True)
    except ValueError as exc:
        raise BadSignature("signature is not base64") from exc
    identity.verify(keyid, signature, base)
    replay.check_and_add(keyid, nonce)
    return sys.intern(keyid)  # one copy of a peer's id, however many tables and requests keep it
