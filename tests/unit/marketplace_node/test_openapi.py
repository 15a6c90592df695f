"""`/openapi.json` is a valid OpenAPI 3.1 document that declares every parameter the handlers
read (the fuzz in tests/integration/node/test_fuzz_api.py generates requests from it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from marketplace_node import openapi
from marketplace_node.model import QUERY_PARAMETERS
from openapi_spec_validator import OpenAPIV31SpecValidator

DOCUMENTS = [openapi.public_document, openapi.private_document]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_each_listeners_document_is_valid_openapi_3_1(document: Callable[[], Any]) -> None:
    errors = [e.message for e in OpenAPIV31SpecValidator(document()).iter_errors()]
    assert errors == []


def _parameters(path: str, method: str) -> dict[str, dict[str, Any]]:
    item = openapi.public_document()["paths"][path]
    declared = [*item.get("parameters", ()), *item[method].get("parameters", ())]
    return {p["name"]: p for p in declared}


def test_every_query_parameter_is_declared() -> None:
    assert set(_parameters("/api/v1/search", "get")) == set(QUERY_PARAMETERS)
    assert set(_parameters("/api/v1/subscribe", "get")) == set(QUERY_PARAMETERS)
    assert set(_parameters("/p2p/v1/changes", "get")) == {"after", "limit"}
    assert set(_parameters("/api/v1/names/{name}/resolve", "get")) == {"name", "want"}
    repeatable = {name for name, (_, many) in QUERY_PARAMETERS.items() if many}
    search = _parameters("/api/v1/search", "get")
    assert {name for name, p in search.items() if p["schema"]["type"] == "array"} == repeatable


@pytest.mark.parametrize("document", DOCUMENTS)
def test_path_templates_declare_their_parameters(document: Callable[[], Any]) -> None:
    for path, item in document()["paths"].items():
        names = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        declared = {p["name"] for p in item.get("parameters", ()) if p["in"] == "path"}
        assert declared == names, path
