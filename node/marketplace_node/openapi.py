"""The OpenAPI 3.1 documents of the node's two listeners; schemas from the models.

Each listener serves its own `/openapi.json`: the public one the client API and the
peer protocol, the private one the admin API and the probes."""

from __future__ import annotations

from typing import Any

from marketplace_protocol.admin import ErrorBody
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from marketplace_node import limits
from marketplace_node.admin import openapi as admin_openapi
from marketplace_node.model import (
    QUERY_PARAMETERS,
    Announcement,
    ChangePage,
    Digest,
    Hello,
    HelloReply,
    Name,
    NameRecord,
    NodeInfo,
    OwnerView,
    PackageId,
    PackageMeta,
    PackageView,
    PeerView,
    Query,
    ReplicateRequest,
    SearchPage,
)

MODELS: tuple[type[BaseModel], ...] = (
    Announcement,
    ChangePage,
    ErrorBody,
    Hello,
    HelloReply,
    NameRecord,
    NodeInfo,
    OwnerView,
    PackageMeta,
    PackageView,
    PeerView,
    Query,
    ReplicateRequest,
    SearchPage,
)
SIGNED: list[dict[str, list[str]]] = [{"rfc9421": []}]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    name: TypeAdapter(kind).json_schema()
    for name, kind in (("id", PackageId), ("digest", Digest), ("name", Name))
}


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    return parameter | ({"description": description} if description else {})


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent, never null: drop the `null` branch of an optional field."""
    branches = [s for s in schema.get("anyOf", ()) if s.get("type") != "null"]
    bare = {k: v for k, v in schema.items() if k not in ("anyOf", "default", "title")}
    return {**bare, **branches[0]} if len(branches) == 1 else bare


def query_parameters() -> list[dict[str, Any]]:
    """`Query` as URL parameters (`model.QUERY_PARAMETERS`), schemas from the model's."""
    properties = Query.model_json_schema(by_alias=True)["properties"]
    out = []
    for param, (field, many) in QUERY_PARAMETERS.items():
        schema = _not_null(properties[Query.model_fields[field].alias or field])
        if not many:
            out.append(_query(param, schema))
            continue
        out.append(_query(param, schema, "repeat for several") | {"explode": True})
    return out


SEQ = {"type": "string", "pattern": "^[0-9]{1,19}$"}
SUBSCRIBE_PARAMETERS = [
    *(p for p in query_parameters() if p["name"] != "cursor"),
    _query("cursor", SEQ, "resume after this change sequence number (or Last-Event-ID)"),
]
CHANGES_PARAMETERS = [
    _query(
        "after",
        {"type": "integer", "minimum": 0, "maximum": limits.SEQ_MAX},
        "change sequence number; default 0",
    ),
    _query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": limits.SYNC_PAGE_MAX},
        f"page size; default {limits.SYNC_PAGE_MAX}",
    ),
]


def with_parameters(path: str, item: dict[str, Any]) -> dict[str, Any]:
    """`item` with its path template's parameters declared (OpenAPI requires them)."""
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    if not names:
        return item
    declared = [
        {"name": n, "in": "path", "required": True, "schema": PATH_PARAMETERS[n]} for n in names
    ]
    return {"parameters": declared, **item}


def _op(
    summary: str,
    *,
    ok: str | None = None,
    body: str | None = None,
    status: str = "200",
    signed: bool = False,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        **({"parameters": parameters} if parameters else {}),
        "responses": {
            status: {
                "description": "OK",
                **({"content": {"application/json": {"schema": _ref(ok)}}} if ok else {}),
            },
            "default": {
                "description": "error",
                "content": {"application/json": {"schema": _ref("ErrorBody")}},
            },
        },
    }
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if signed:
        op["security"] = SIGNED
    return op


def probe_paths() -> dict[str, Any]:
    return {
        "/healthz": {"get": _op("liveness")},
        "/readyz": {
            "get": _op(
                "ready: listening, store open, joined a peer when peers are configured, "
                "not draining"
            )
        },
    }


def paths() -> dict[str, Any]:
    return {
        "/api/v1/blobs/{digest}": {
            "put": _op("upload content (raw body) under its SHA-256", status="201")
        },
        "/api/v1/packages": {
            "post": _op(
                "publish a package its author signed (201; 200 for an identical retry; "
                "409 name_taken / version_exists)",
                ok="PackageView",
                body="PackageMeta",
                status="201",
            )
        },
        "/api/v1/names/{name}": {"get": _op("a name's owners and versions", ok="OwnerView")},
        "/api/v1/names/{name}/records": {
            "post": _op(
                "an owner's signed record: add_owner, remove_owner, transfer, yank, unyank",
                ok="OwnerView",
                body="NameRecord",
                status="201",
            )
        },
        "/api/v1/names/{name}/resolve": {
            "get": _op(
                "the version of a name that `want` selects",
                ok="PackageView",
                parameters=[
                    _query(
                        "want",
                        {"type": "string", "minLength": 1, "maxLength": limits.VERSION_MAX},
                        "an exact version, `latest` (default) or an npm range such as ^1.2",
                    )
                ],
            )
        },
        "/api/v1/packages/{id}": {"get": _op("a package with its providers", ok="PackageView")},
        "/api/v1/packages/{id}/content": {
            "get": _op("content, fetched from the best provider and verified if not local")
        },
        "/api/v1/search": {
            "get": _op("search", ok="SearchPage", parameters=query_parameters()),
            "post": _op("search with a Query body", ok="SearchPage", body="Query"),
        },
        "/api/v1/subscribe": {
            "get": _op(
                "server-sent events of matching packages; resume with Last-Event-ID or cursor",
                parameters=SUBSCRIBE_PARAMETERS,
            )
        },
        "/api/v1/peers": {"get": _op("known peers with reputation")},
        "/api/v1/status": {"get": _op("node summary", ok="NodeInfo")},
        "/p2p/v1/announce": {
            "post": _op(
                "push one signed announcement", body="Announcement", status="202", signed=True
            )
        },
        "/p2p/v1/hello": {
            "post": _op("peer exchange and liveness", ok="HelloReply", body="Hello", signed=True)
        },
        "/p2p/v1/changes": {
            "get": _op(
                "change log page after a sequence number (anti-entropy)",
                ok="ChangePage",
                signed=True,
                parameters=CHANGES_PARAMETERS,
            )
        },
        "/p2p/v1/content/{digest}": {"get": _op("raw content by digest", signed=True)},
        "/p2p/v1/replicate": {
            "post": _op(
                "a draining sole provider hands a package over: fetch it, then provide it",
                body="ReplicateRequest",
                signed=True,
            )
        },
    }


def public_document() -> dict[str, Any]:
    """The public listener's document: client API and peer protocol."""
    return _document("marketplace-node", paths(), MODELS)


def private_document() -> dict[str, Any]:
    """The private listener's document: admin API and probes (`/metrics` is Prometheus')."""
    return _document(
        "marketplace-node (private)", probe_paths() | admin_openapi.PATHS, admin_openapi.MODELS
    )


def _document(
    title: str, items: dict[str, Any], models: tuple[type[BaseModel], ...]
) -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(m, "serialization") for m in models],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "v1"},
        "paths": {path: with_parameters(path, item) for path, item in items.items()},
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "rfc9421": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Signature",
                    "description": "RFC 9421 subset, Ed25519, keyid = peer id "
                    "(see marketplace_node.signing)",
                },
                "adminToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }
