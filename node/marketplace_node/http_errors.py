"""One aiohttp middleware that turns every failure into an `ErrorBody` JSON answer.

`NodeError`s keep their stable code and status (plus `Retry-After`, rounded
up, for rate limits); aiohttp's own HTTP exceptions (404, 405, 413 from
`client_max_size`) get the same JSON shape; anything unexpected becomes a
500 `internal` that says nothing about its cause, while the cause is logged
(redacted by the log formatter). Review MAJOR-5, MINOR-1, MINOR-7. Being the
outermost middleware, it also binds each request's log context
(`request_id`, method, path), echoing the id in `X-Request-Id`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import re
import secrets
from collections.abc import Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from marketplace_protocol import errors, logs
from marketplace_protocol.admin import ErrorBody

from marketplace_node import limits

logger = logging.getLogger(__name__)

JSON: Final = "application/json"

_CODES: Final = {
    400: errors.InvalidInput.code,
    401: errors.Unauthenticated.code,
    403: errors.Forbidden.code,
    404: errors.NotFound.code,
    405: "method_not_allowed",
    409: errors.Conflict.code,
    413: errors.PayloadTooLarge.code,
    414: errors.RequestLineTooLong.code,
    415: errors.UnsupportedMediaType.code,
    429: errors.RateLimited.code,
}
_KEPT_HEADERS: Final = ("Allow", "WWW-Authenticate", "Retry-After")
REQUEST_ID: Final = "X-Request-Id"
_REQUEST_ID_FORM: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


_PROCESS_PREFIX: Final = secrets.token_hex(4)
_SEQUENCE: Final = itertools.count()


def request_id(request: web.Request) -> str:
    """The caller's `X-Request-Id` when well-formed (so a trace spans nodes), else a new one:
    this process's random prefix and a counter, 16 hex digits. Unique, which is all an id
    needs, without a `getrandom` call on every request (4 % of a cheap request's CPU)."""
    given = request.headers.get(REQUEST_ID, "")
    if _REQUEST_ID_FORM.match(given):
        return given
    return f"{_PROCESS_PREFIX}{next(_SEQUENCE) & 0xFFFFFFFF:08x}"


def retry_after_header(seconds: float) -> str:
    """Whole seconds, rounded up and at least 1, so a client never retries too early."""
    return str(max(1, math.ceil(seconds)))


def error_response(exc: errors.NodeError) -> web.Response:
    body = ErrorBody(
        code=exc.code, message=exc.message, retryable=exc.retryable, details=exc.details
    )
    response = web.Response(
        status=exc.http_status, text=body.model_dump_json(by_alias=True), content_type=JSON
    )
    if isinstance(exc, errors.RateLimited):
        response.headers["Retry-After"] = retry_after_header(exc.retry_after)
    return response


def _http_error_response(exc: web.HTTPException) -> web.Response:
    code = _CODES.get(exc.status, "internal" if exc.status >= 500 else f"http_{exc.status}")
    body = ErrorBody(code=code, message=exc.reason, retryable=exc.status in (429, 502, 503, 504))
    response = web.Response(
        status=exc.status, text=body.model_dump_json(by_alias=True), content_type=JSON
    )
    for name in _KEPT_HEADERS:
        if name in exc.headers:
            response.headers[name] = exc.headers[name]
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: binds the request's log context, renders every failure."""
    rid = request_id(request)
    with logs.bind(request_id=rid, method=request.method, path=request.path):
        response = await _render_errors(request, handler)
    if not response.prepared:
        response.headers.setdefault(REQUEST_ID, rid)
    return response


def check_sizes(request: web.Request) -> None:
    """Our limits of the request line and header fields (`limits`), tighter than the
    parser's, so an over-long request gets a typed answer rather than aiohttp's plain 400."""
    line = len(request.method) + len(request.raw_path) + len("  HTTP/1.1")
    if line > limits.REQUEST_LINE_MAX:
        raise errors.RequestLineTooLong(
            f"request line of {line} bytes; at most {limits.REQUEST_LINE_MAX}"
        )
    for name, value in request.raw_headers:
        if len(name) + len(value) + 2 > limits.HEADER_FIELD_MAX:
            raise errors.HeaderTooLarge(
                f"header field {name[:64].decode('latin-1')!r} longer than "
                f"{limits.HEADER_FIELD_MAX} bytes"
            )


async def _render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        check_sizes(request)
        return await handler(request)
    except errors.NodeError as exc:
        if exc.http_status >= 500:
            logger.warning("%s %s failed: %s", request.method, request.path, exc.code)
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are answers, not errors
        return _http_error_response(exc)
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(errors.NodeError("internal error"))


def tarpit_middleware(delay: Callable[[], float], *, max_held: int = 256) -> Middleware:
    """Answer a banned peer only after `delay()` seconds (place it inside `error_middleware`).

    A flooding client's workers then wait instead of sending, so its request
    rate drops to about its concurrency per delay, and honest clients keep
    the event loop. `delay` is read per held answer, so the fleet's policy
    (`escalation.tarpitSeconds`) takes effect as soon as it is applied; 0
    answers at once. At most `max_held` answers are held at once (beyond that
    they go out at once), so the tarpit cannot be turned into an exhaustion of
    connections. Only bans are delayed: an honest client is never banned, but
    may overshoot a rate limit now and then.
    """
    if max_held < 0:
        raise ValueError("the tarpit needs a non-negative max_held")
    held = 0

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal held
        try:
            return await handler(request)
        except errors.PeerBanned:
            seconds = delay()
            if seconds > 0 and held < max_held:
                held += 1
                try:
                    await asyncio.sleep(seconds)
                finally:
                    held -= 1
            raise

    return middleware
