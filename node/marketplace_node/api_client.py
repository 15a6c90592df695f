"""The CLI's client of a node's HTTP API: every failure becomes one `CliError` with an
exit code for its kind, so the user reads one line, never a traceback.

The codes are part of the CLI's interface (docs/node.md, "Exit codes"): scripts
tell "the node is down" from "the package does not exist" from "the content is
corrupt" without parsing messages.
"""

from __future__ import annotations

import enum
import errno
import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.client import HTTPException, HTTPResponse
from typing import Any

import pydantic
from marketplace_protocol.admin import ErrorBody

TIMEOUT = 60.0


class Exit(enum.IntEnum):
    """What the process exits with, one code per kind of failure."""

    OK = 0
    LOCAL = 1  # a local file or address: unreadable input, unwritable output, port in use
    USAGE = 2  # bad flags or configuration (argparse uses 2 as well)
    UNREACHABLE = 3  # no HTTP answer: refused, timed out, name not resolved, cut off
    REFUSED = 4  # the node answered 4xx: not found, invalid input, rate limited
    FAILED = 5  # the node answered 5xx: it, or every provider it tried, failed
    INTEGRITY = 6  # the bytes received do not match the signed digest
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class CliError(Exception):
    """A failure the CLI reports as one line and an exit code."""

    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _reason(exc: BaseException) -> str:
    """'connection refused', 'timed out', ... from whatever urllib and sockets raise."""
    inner = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(inner, ssl.SSLCertVerificationError):  # before OSError: it is one
        return f"its certificate is not trusted ({inner.verify_message})"
    if isinstance(inner, socket.gaierror):
        return "name not resolved"
    if isinstance(inner, TimeoutError):
        return "timed out"
    if isinstance(inner, OSError) and inner.errno is not None:
        return (inner.strerror or errno.errorcode.get(inner.errno, str(inner.errno))).lower()
    return str(inner) or type(inner).__name__


def _http_error(url: str, exc: urllib.error.HTTPError) -> CliError:
    raw = exc.read()
    kind = Exit.REFUSED if exc.code < 500 else Exit.FAILED
    try:
        body = ErrorBody.model_validate_json(raw)
        said = f"{body.code}: {body.message}"
        if body.details:
            said += " (" + ", ".join(f"{k}={v}" for k, v in sorted(body.details.items())) + ")"
        if body.code == "integrity_failed":  # the node's providers served corrupt bytes
            kind = Exit.INTEGRITY
    except pydantic.ValidationError:
        said = raw.decode(errors="replace").strip()[:200] or exc.reason
    return CliError(kind, f"{url} answered {exc.code} {said}")


@contextmanager
def request(
    method: str,
    url: str,
    body: bytes | None = None,
    content_type: str = "application/json",
    timeout: float | None = TIMEOUT,
    *,
    context: ssl.SSLContext | None = None,
) -> Iterator[HTTPResponse]:
    """Open `url` (https verified with `context`, else the system's CAs); every failure,
    while opening or reading, is a `CliError`."""
    req = urllib.request.Request(  # noqa: S310 - http(s) only, checked by the CLI
        url, data=body, method=method, headers={"Content-Type": content_type}
    )
    base = url.split("/api/", 1)[0]
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:  # noqa: S310
            yield resp
    except urllib.error.HTTPError as exc:
        raise _http_error(url, exc) from None
    except (urllib.error.URLError, OSError, HTTPException) as exc:
        raise CliError(Exit.UNREACHABLE, f"cannot reach {base}: {_reason(exc)}") from None


def call(
    method: str,
    url: str,
    body: bytes | None = None,
    content_type: str = "",
    *,
    context: ssl.SSLContext | None = None,
) -> Any:
    """A JSON request and its JSON answer."""
    with request(method, url, body, content_type or "application/json", context=context) as resp:
        raw = resp.read()
    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise CliError(Exit.FAILED, f"{url} answered something that is not JSON") from None


def download(url: str, *, context: ssl.SSLContext | None = None) -> bytes:
    with request("GET", url, context=context) as resp:
        return resp.read()
