"""docs/api-reference.md is generated from the CRDs and is current; it lists every field,
default and rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from marketplace_operator import apiref, crdgen
from marketplace_operator.model import CRDS
from marketplace_operator.model.common import CrdInfo

ROOT = Path(__file__).resolve().parents[3]


def test_the_committed_reference_is_current() -> None:
    committed = (ROOT / "docs" / "api-reference.md").read_text()
    assert committed == apiref.page(), "run: python -m marketplace_operator.apiref"


@pytest.mark.parametrize("info", CRDS, ids=lambda i: i.kind)
def test_every_field_default_and_rule_is_on_the_page(info: CrdInfo) -> None:
    text = apiref.page().split(f"\n## {info.kind}\n")[1].split("\n## ")[0]
    crd = crdgen.render(info)
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for part in ("spec", "status"):
        for path, schema, _ in apiref.fields(root["properties"][part]):
            row = next(line for line in text.splitlines() if line.startswith(f"| `{path}` |"))
            if "default" in schema:
                assert f"`{json.dumps(schema['default'])}`" in row
    for _, rule in apiref.rules(root):
        assert f"`{apiref._cell(rule['rule'])}`" in text


def test_types_in_words() -> None:
    assert apiref.type_of({"type": "array", "items": {"type": "object"}}) == "[]object"
    assert apiref.type_of({"type": "object", "additionalProperties": {"type": "string"}}) == (
        "map[string]string"
    )
    assert apiref.type_of({"x-kubernetes-int-or-string": True}) == "int-or-string"
    assert apiref.type_of({"type": "string", "format": "date-time"}) == "string (date-time)"
    assert apiref.type_of({}) == "any"


def test_nested_fields_and_rules_have_their_paths() -> None:
    schema = {
        "required": ["a"],
        "x-kubernetes-validations": [{"rule": "r0", "message": "m0"}],
        "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "integer"}}},
            "l": {
                "type": "array",
                "items": {
                    "type": "object",
                    "x-kubernetes-validations": [{"rule": "r1", "message": "m1"}],
                    "properties": {"c": {"type": "string"}},
                },
            },
        },
    }
    assert [(p, r) for p, _, r in apiref.fields(schema)] == [
        ("a", True), ("a.b", False), ("l", False), ("l[].c", False),
    ]  # fmt: skip
    assert [(on, r["rule"]) for on, r in apiref.rules(schema)] == [
        ("(the object)", "r0"),
        ("l[]", "r1"),
    ]


def test_check_mode_reports_a_stale_page(tmp_path: Path) -> None:
    out = tmp_path / "api.md"
    assert apiref.main(["--out", str(out), "--check"]) == 1
    assert apiref.main(["--out", str(out)]) == 0
    assert apiref.main(["--out", str(out), "--check"]) == 0
    out.write_text(out.read_text() + "edited by hand\n")
    assert apiref.main(["--out", str(out), "--check"]) == 1
