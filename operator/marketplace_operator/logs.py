"""The operator's log: the node's JSON lines and redaction, plus kopf's object context.

One format for the whole product: `marketplace_protocol.logs` writes each record as one
redacted JSON object (the same scrubbing of tokens, PEM blocks and URL credentials,
the same shortening of peer ids), so one log pipeline reads nodes and operator alike.
kopf's per-object loggers attach the object (`k8s_ref`), kopf's settings and a
posting flag to every record; the object becomes one `object` field
(`namespace/name`, with `kind`), the rest is not log content and is left out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import IO, Final

from marketplace_protocol import logs as node_logs

_KOPF_FIELDS: Final = frozenset({"k8s_ref", "k8s_skip", "settings"})


def _object(ref: object) -> dict[str, str] | None:
    if not isinstance(ref, Mapping):
        return None
    name = "/".join(str(ref[k]) for k in ("namespace", "name") if ref.get(k))
    return {"object": name, "kind": str(ref.get("kind") or "")}


class JsonFormatter(node_logs.JsonFormatter):
    """The node's formatter on a copy of the record without kopf's attachments."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _KOPF_FIELDS}
        fields.update(_object(vars(record).get("k8s_ref")) or {})
        return super().format(logging.makeLogRecord(fields))


def configure(level: str | int = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """JSON lines on stderr (or `stream`) for every logger, kopf's included."""
    handler = node_logs.configure(level, stream)
    handler.setFormatter(JsonFormatter())
    return handler
