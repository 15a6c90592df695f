"""The admin API's part of the node's OpenAPI document, from the same wire models.

`marketplace_node.openapi.private_document()` puts `PATHS` and `MODELS` in the
private listener's `/openapi.json`; a test proves every admin route is described and
every schema reference resolves, so the document cannot drift from
`admin/routes.py`.
"""

from __future__ import annotations

from typing import Any, Final

from marketplace_protocol.admin import (
    DrainRequest,
    DrainStatus,
    ErrorBody,
    LocalBans,
    Members,
    NodeStatus,
    PolicyApplied,
    PolicyDocument,
)
from pydantic import BaseModel

from marketplace_node.admin.routes import PREFIX

MODELS: Final[tuple[type[BaseModel], ...]] = (
    DrainRequest,
    DrainStatus,
    ErrorBody,
    LocalBans,
    Members,
    NodeStatus,
    PolicyApplied,
    PolicyDocument,
)
SECURITY: Final[list[dict[str, list[str]]]] = [{"adminToken": []}]


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "ErrorBody", "content": _json("ErrorBody")} for s in statuses}


def _op(
    summary: str,
    *,
    ok: str | None,
    status: int = 200,
    body: str | None = None,
    errors: tuple[int, ...] = (401,),
) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": "OK"}
    if ok is not None:
        answer["content"] = _json(ok)
    op: dict[str, Any] = {
        "summary": summary,
        "security": SECURITY,
        "responses": {str(status): answer, **_errors(*errors)},
    }
    if body is not None:
        op["requestBody"] = {"required": status != 202, "content": _json(body)}
    return op


PATHS: Final[dict[str, dict[str, Any]]] = {
    f"{PREFIX}/policy": {
        "put": _op(
            "replace bans and rate limits atomically; older versions are refused",
            ok="PolicyApplied",
            body="PolicyDocument",
            errors=(400, 401, 409, 413),
        )
    },
    f"{PREFIX}/status": {
        "get": {
            **_op("peer id, peers, applied policy, drain", ok="NodeStatus", errors=(400, 401)),
            "parameters": [
                {
                    "name": "peers",
                    "in": "query",
                    "required": False,
                    "description": "list at most this many peers (the fleet's first), count all "
                    "in peerCount",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 999_999},
                }
            ],
        }
    },
    f"{PREFIX}/bans/local": {
        "get": _op("bans this node decided itself, with provenance", ok="LocalBans")
    },
    f"{PREFIX}/members": {
        "put": _op(
            "the fleet's members (bootstrap peers)",
            ok=None,
            status=204,
            body="Members",
            errors=(400, 401, 413),
        )
    },
    f"{PREFIX}/drain": {
        "post": _op(
            "start draining (idempotent)",
            ok="DrainStatus",
            status=202,
            body="DrainRequest",
            errors=(400, 401),
        ),
        "get": _op("drain progress", ok="DrainStatus"),
    },
}
