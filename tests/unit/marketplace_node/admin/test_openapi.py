"""The admin API's OpenAPI part describes every route and every reference resolves."""

from __future__ import annotations

import json
import re
from typing import Any, cast

from aiohttp import web
from marketplace_node.admin import openapi, routes
from pydantic.json_schema import models_json_schema


def test_every_admin_route_is_described() -> None:
    app = web.Application()
    routes.add_admin_routes(app, cast("routes.AdminBackend", object()), None)  # never called
    served = {
        (route.method.lower(), route.resource.canonical)
        for subapp in [r.get_info().get("app") for r in app.router.resources()]
        if isinstance(subapp, web.Application)
        for route in subapp.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    described = {(method, path) for path, ops in openapi.PATHS.items() for method in ops}
    assert served == described


def test_every_reference_resolves() -> None:
    _, schemas = models_json_schema(
        [(m, "serialization") for m in openapi.MODELS],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    defined = set(schemas.get("$defs", {}))
    text = json.dumps({"paths": openapi.PATHS, "schemas": schemas})
    referenced = set(re.findall(r"#/components/schemas/([A-Za-z0-9_]+)", text))
    assert referenced <= defined
    assert {"PolicyDocument", "ErrorBody", "NodeStatus"} <= referenced


def test_secured_and_answers_errors_as_error_body() -> None:
    ops: list[dict[str, Any]] = [op for ops in openapi.PATHS.values() for op in ops.values()]
    for op in ops:
        assert op["security"] == [{"adminToken": []}]
        assert "401" in op["responses"]
