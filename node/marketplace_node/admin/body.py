"""Reading request bodies with a size limit before anything is parsed (review CRITICAL-3).

The limit is checked against `Content-Length` up front and again while
streaming (a client may lie or use chunked encoding). aiohttp inflates
gzip and deflate bodies as they stream in, so the streaming check counts
inflated bytes and a compression bomb costs us at most `limit` bytes.
A body must say it is JSON (`application/json` or `application/*+json`):
a form or `text/plain` body is refused with 415 before it is read, so a
browser's form post can never reach the admin API as a "simple" request.
Validation errors become `InvalidInput` with the first few locations and
messages, never the offending input itself.
"""

from __future__ import annotations

from typing import Final, TypeVar

import pydantic
from aiohttp import web
from marketplace_protocol import errors

M = TypeVar("M", bound=pydantic.BaseModel)

CHUNK: Final = 64 * 1024
DECODED_BY_AIOHTTP: Final = frozenset({"", "identity", "gzip", "deflate"})
ERRORS_SHOWN: Final = 3
MESSAGE_MAX: Final = 200


def is_json(content_type: str) -> bool:
    """`application/json` or a JSON-based `application/*+json` type (parameters aside)."""
    kind = content_type.partition(";")[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


async def read_body(request: web.Request, limit: int) -> bytes:
    """The JSON body's bytes (inflated if `Content-Encoding: gzip`); `UnsupportedMediaType`
    for a body of another type, `PayloadTooLarge` above `limit`. No body at all is `b""`."""
    if request.body_exists and not is_json(request.headers.get("Content-Type", "")):
        raise errors.UnsupportedMediaType("the body must be JSON (Content-Type: application/json)")
    declared = request.content_length
    if declared is not None and declared > limit:
        raise errors.PayloadTooLarge(f"body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            raise errors.PayloadTooLarge(f"body exceeds {limit} bytes")
        chunks.append(chunk)
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in DECODED_BY_AIOHTTP:
        raise errors.InvalidInput(f"unsupported Content-Encoding {encoding[:32]!r}")
    return b"".join(chunks)


def describe(exc: pydantic.ValidationError) -> str:
    """A short, input-free summary: `3 errors: bans.0.cidr: ...; version: ...`."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:ERRORS_SHOWN]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}"[:MESSAGE_MAX])
    count = exc.error_count()
    head = f"{count} validation error{'s' if count != 1 else ''}"
    return f"{head}: {'; '.join(parts)}"


def parse(model: type[M], data: bytes) -> M:
    """`data` as a `model`, or `InvalidInput` (400) with a concise reason."""
    try:
        return model.model_validate_json(data)
    except pydantic.ValidationError as exc:
        raise errors.InvalidInput(describe(exc)) from None
