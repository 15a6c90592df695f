"""Structured JSON logging with request/peer context and redaction of every line.

One JSON object per line: time, level, logger, message, the context bound
with `bind()` (request id, peer, operation: contextvars, so concurrent
requests never mix), any `extra=` fields, and the exception. Everything goes
through `redact` on the way out, and peer ids and addresses are shortened,
whatever the call site passed (review CRITICAL-5, MAJOR-7).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Final

from marketplace_protocol import redact

_EMPTY: Final[Mapping[str, object]] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "marketplace_log_context", default=_EMPTY
)

_SHORTEN: Final = {
    "peer": redact.short_peer_id,
    "peer_id": redact.short_peer_id,
    "peerId": redact.short_peer_id,
    "address": redact.short_address,
    "url": redact.short_address,
}

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD: Final = frozenset(
    {*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime", "taskName"}
)


@contextmanager
def bind(**fields: object) -> Iterator[None]:
    """Add fields to every log line emitted inside the block (and the tasks it starts)."""
    token = _context.set(MappingProxyType({**_context.get(), **fields}))
    try:
        yield
    finally:
        _context.reset(token)


def _field(name: str, value: object) -> object:
    shorten = _SHORTEN.get(name)
    if shorten is not None and (value is None or isinstance(value, str)):
        return shorten(value)
    return redact.redact_value(value, name)


class JsonFormatter(logging.Formatter):
    """Formats a record as one redacted JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact.redact_text(record.getMessage()),
        }
        for name, value in _context.get().items():
            line[name] = _field(name, value)
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = _field(name, value)
        if record.exc_info:
            line["exc"] = redact.redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            line["stack"] = redact.redact_text(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class RedactingFilter(logging.Filter):
    """For handlers with a plain formatter: scrubs the message before any formatter sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact.redact_text(record.getMessage())
        record.args = None
        return True


def configure(level: str | int = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """Send the root logger's records, as JSON lines, to `stream` (stderr); returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    return handler
