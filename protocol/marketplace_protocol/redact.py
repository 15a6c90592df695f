"""Redaction of secrets and shortening of identifiers in anything that may reach a log.

Secrets are `pydantic.SecretStr` wherever they live (settings, the admin
token), so their `repr` and `str` are masked at the source. This module is
the second line for text that was built anyway: bearer and basic
credentials, PEM blocks, URL userinfo, and `name=value` pairs whose name
says secret, token, password, credential, authorization or ends in "key"
(review CRITICAL-5).

Peer ids are shortened to their first 16 characters as the review asks.
Addresses keep scheme, host and port but lose userinfo, path and query,
which is where credentials hide in URLs. Private IPs are *not* masked:
inside a cluster every pod address is private, and an operator debugging a
fleet needs to see which pod a line is about.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

REDACTED: Final = "[REDACTED]"
PEER_ID_SHOWN: Final = 16

_SECRET_WORDS = r"(?:secret|token|passw(?:or)?d|credential|authorization|cookie)"  # noqa: S105
_SECRET_NAME = re.compile(rf"(?i)(?:{_SECRET_WORDS}|key$)")
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(?:-----END [A-Z0-9 ]+-----|\Z)")
_AUTH = re.compile(r"(?i)(?<![a-z])(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+")
_USERINFO = re.compile(r"(?i)([a-z][a-z0-9+.\-]*://)[^/\s@]+@")
_PAIR = re.compile(
    rf"""(?ix)
    (\b[\w.\-]*(?:{_SECRET_WORDS}[\w.\-]*|key)\b)   # a secret-sounding name
    (["']?\s*[:=]\s*["']?)                          # = or : with optional quotes
    ([^\s"',;&}}\]]+)                               # the value
    """
)


def is_secret_name(name: str) -> bool:
    """True for field names that hold secrets: `token`, `adminToken`, `private_key`, ..."""
    return _SECRET_NAME.search(name) is not None


def redact_text(text: str) -> str:
    """`text` with every recognisable credential replaced by `[REDACTED]`."""
    text = _PEM.sub("[REDACTED PEM]", text)
    text = _AUTH.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    return _PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def redact_value(value: object, name: str = "") -> object:
    """A structure fit for a log line: secret-named fields masked, strings scrubbed."""
    if name and is_secret_name(name):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {str(k): redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact_text(str(value))


def short_peer_id(peer_id: str | None) -> str:
    if peer_id is None:
        return "-"
    if len(peer_id) <= PEER_ID_SHOWN:
        return peer_id
    return peer_id[:PEER_ID_SHOWN] + "..."


def short_address(address: str | None) -> str:
    """`scheme://host:port` of a URL (no userinfo, path or query); other text is scrubbed."""
    if not address:
        return "-"
    if "://" not in address:
        return redact_text(address)[:64]
    try:
        parts = urlsplit(address)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return REDACTED
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}"
