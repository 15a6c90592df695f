"""Peer request signatures: a documented subset of RFC 9421 (HTTP Message Signatures) with Ed25519.

Why our own subset: the maintained `http-message-signatures` package targets
`requests`-style message objects and would need adapters on both the aiohttp
client and server side; the subset below is small enough to read in one go.
It is checked against RFC 9421's own Ed25519 example (Appendix B.2.6) and, in
both directions, against that package (tests/unit/marketplace_node/test_signing.py).

Every peer request carries (RFC 9421 §2, §4; RFC 9530 for the digest)::

    Content-Digest: sha-256=:<base64 sha256(body)>:
    Signature-Input: sig1=("@method" "@path" "@query" "content-digest")
        ;created=<unix s>;nonce="<hex>";keyid="<peer id>";alg="ed25519"   (one line on the wire)
    Signature: sig1=:<base64 Ed25519 signature of the signature base>:

The signature base is the RFC 9421 one: one `"<component>": <value>` line per
covered component and a final `"@signature-params": <inner list>` line, the
inner list as the sender serialized it: its parameters may come in any order
(the receiver requires `created`, `nonce` and `keyid`, allows `alg="ed25519"`,
and refuses any other), and any one signature label is accepted.
`keyid` is the sender's self-certifying peer id (see `identity`), so no key
lookup is needed. The receiver refuses, with typed errors:

* missing or malformed headers, a wrong digest or signature → `BadSignature`;
* `created` outside now ± `CLOCK_SKEW_SECONDS` (wall clock, used only for
  this comparison) → `StaleRequest`, once the signature verified: a genuine peer
  whose clock (or ours) stepped is told apart from a forger, and its `created`
  still tells how far apart the clocks are (`peerclocks`);
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
from collections.abc import Mapping, Sequence

from marketplace_protocol import identity
from marketplace_protocol.clock import Clock
from marketplace_protocol.errors import BadSignature, ReplayedRequest, StaleRequest

from marketplace_node import limits
from marketplace_node.compact import TtlSet
from marketplace_node.peerclocks import PeerClocks

COMPONENTS = ("@method", "@path", "@query", "content-digest")
_LABEL = r"[a-z][a-z0-9_.-]{0,31}"
_INPUT_RE = re.compile(
    rf"^(?P<label>{_LABEL})="
    r'(?P<params>\("@method" "@path" "@query" "content-digest"\)'
    r'(?:;[a-z]{1,8}=(?:[0-9]{1,12}|"[^"\\]{0,200}")){3,4})$'
)
_PARAM_RE = re.compile(r';([a-z]{1,8})=([0-9]{1,12}|"[^"\\]{0,200}")')
_SIGNATURE_RE = re.compile(rf"^(?P<label>{_LABEL})=:(?P<sig>[A-Za-z0-9+/=]{{1,200}}):$")
_NONCE_RE = re.compile(rf"^[0-9a-f]{{16,{limits.NONCE_MAX}}}$")
_KEYID_RE = re.compile(r"^[a-z0-9]{8,128}$")


def content_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def signature_params(components: Sequence[str], **params: int | str) -> str:
    """`("<component>" ...);name=value...`: integers bare, strings quoted (RFC 8941)."""
    inner = "(" + " ".join(f'"{c}"' for c in components) + ")"
    return inner + "".join(
        f";{name}={value}" if isinstance(value, int) else f';{name}="{value}"'
        for name, value in params.items()
    )


def signature_base(covered: Sequence[tuple[str, str]], params: str) -> bytes:
    """RFC 9421 §2.5: a `"<component>": <value>` line each, then `"@signature-params"`."""
    lines = [f'"{name}": {value}' for name, value in covered]
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode()


def _request_base(*, method: str, path: str, query: str, digest: str, params: str) -> bytes:
    values = (method.upper(), path, "?" + query, digest)
    return signature_base(list(zip(COMPONENTS, values, strict=True)), params)


def _parse_params(serialized: str) -> dict[str, str]:
    """The parameters of our inner list, refusing duplicates and unknown names."""
    found: dict[str, str] = {}
    for name, value in _PARAM_RE.findall(serialized):
        if name in found or name not in ("created", "nonce", "keyid", "alg"):
            raise BadSignature(f"unexpected or repeated signature parameter {name!r}")
        found[name] = value.strip('"')
    if not {"created", "nonce", "keyid"} <= set(found) or not found["created"].isdigit():
        raise BadSignature("signature parameters need created, nonce and keyid")
    if not (_NONCE_RE.match(found["nonce"]) and _KEYID_RE.match(found["keyid"])):
        raise BadSignature("malformed nonce or keyid")
    if found.get("alg", "ed25519") != "ed25519":
        raise BadSignature("only alg=ed25519 is accepted")
    return found


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
    params = signature_params(
        COMPONENTS, created=created, nonce=nonce, keyid=ident.peer_id, alg="ed25519"
    )
    base = _request_base(method=method, path=path, query=query, digest=digest, params=params)
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
    clocks: PeerClocks | None = None,
) -> str:
    """Check a signed request and return the sender's peer id, or raise a typed error;
    a verified sender's `created` is noted in `clocks`."""
    sig_input = headers.get("Signature-Input", "")
    sig_header = headers.get("Signature", "")
    digest = headers.get("Content-Digest", "")
    if max(len(sig_input), len(sig_header), len(digest)) > limits.SIGNATURE_HEADER_MAX:
        raise BadSignature("signature headers too long")
    match = _INPUT_RE.fullmatch(sig_input)
    sig_match = _SIGNATURE_RE.fullmatch(sig_header)
    if match is None or sig_match is None or match["label"] != sig_match["label"]:
        raise BadSignature("missing or malformed Signature-Input/Signature")
    params = _parse_params(match["params"])
    created = int(params["created"])
    if digest != content_digest(body):
        raise BadSignature("Content-Digest does not match the body")
    keyid, nonce = params["keyid"], params["nonce"]
    base = _request_base(
        method=method, path=path, query=query, digest=digest, params=match["params"]
    )
    try:
        signature = base64.b64decode(sig_match["sig"], validate=True)
    except ValueError as exc:
        raise BadSignature("signature is not base64") from exc
    identity.verify(keyid, signature, base)
    if clocks is not None:
        clocks.note(keyid, created, now_wall=now_wall)
    if not abs(now_wall - created) <= skew:
        raise StaleRequest("request `created` outside the accepted clock-skew window")
    replay.check_and_add(keyid, nonce)
    return sys.intern(keyid)  # one copy of a peer's id, however many tables and requests keep it
