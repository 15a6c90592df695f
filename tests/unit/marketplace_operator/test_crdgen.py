"""The committed CRDs are exactly what the models generate, and the schemas are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from marketplace_operator import crdgen
from marketplace_operator.model import CRDS, banlist, mnode, ratelimitpolicy
from marketplace_operator.model.common import CrdInfo
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("info", CRDS, ids=lambda i: i.plural)
def test_committed_crd_matches_generated(info: CrdInfo) -> None:
    committed = (ROOT / "crds" / f"{info.plural}.yaml").read_text()
    assert committed == crdgen.dump(info), "run: python -m marketplace_operator.crdgen"


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        found += _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        found += _walk(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        found += _walk(schema["items"], f"{path}[]")
    return found


@pytest.mark.parametrize("info", CRDS, ids=lambda i: i.plural)
def test_schema_is_structural_and_explained(info: CrdInfo) -> None:
    root = crdgen.openapi_schema(info)
    for path, node in _walk(root):
        assert "$ref" not in node, path
        assert "title" not in node, path
        if node.get("x-kubernetes-int-or-string"):
            continue
        assert "type" in node, f"{path} has no type"
        assert "anyOf" not in node, path
        named = not path.endswith(("]", "*"))
        if path.startswith((".spec.", ".status.")) and named:
            assert node.get("description"), f"{path} has no description for kubectl explain"


def test_nested_objects_default_to_empty_so_child_defaults_apply() -> None:
    spec = crdgen.openapi_schema(CRDS[0])["properties"]["spec"]["properties"]
    assert spec["p2p"]["default"] == {}
    assert spec["p2p"]["properties"]["port"]["default"] == 7070
    assert spec["storage"]["properties"]["size"]["default"] == "1Gi"
    assert "storageClassName" in spec["storage"]["properties"]
    assert "default" not in spec["storage"]["properties"]["storageClassName"]


def test_check_mode_reports_stale_files(tmp_path: Path) -> None:
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "marketplacenodes.yaml").write_text("stale")
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1


def test_generated_yaml_parses_back_to_the_rendered_dict() -> None:
    for info in CRDS:
        assert yaml.safe_load(crdgen.dump(info)) == crdgen.render(info)


def test_bounds_patterns_and_rules_show_in_descriptions() -> None:
    spec = crdgen.openapi_schema(mnode.CRD)["properties"]["spec"]["properties"]
    assert spec["p2p"]["properties"]["port"]["description"].endswith(
        "[minimum 1024; maximum 65535]"
    )
    assert "max length 50" in spec["fleet"]["description"]
    assert "pattern: ^[a-z0-9]" in spec["fleet"]["description"]
    assert (
        "rule: storage.size must be greater than 0"
        in (spec["storage"]["properties"]["size"]["description"])
    )
    assert "cannot be added, changed or removed" in spec["storage"]["description"]


@pytest.mark.parametrize("size", ["-1Gi", -1, "+1Gi"])
def test_the_operator_refuses_negative_quantities_stored_before_the_schema(
    size: int | str,
) -> None:
    with pytest.raises(ValidationError):
        mnode.MarketplaceNodeSpec.model_validate({"storage": {"size": size}})
    with pytest.raises(ValidationError):
        mnode.MarketplaceNodeSpec.model_validate({"resources": {"requests": {"cpu": size}}})


def test_one_fleet_name_limit_everywhere() -> None:
    long = "f" * 51
    for spec in (
        mnode.MarketplaceNodeSpec,
        banlist.BanListSpec,
        ratelimitpolicy.RateLimitPolicySpec,
    ):
        with pytest.raises(ValidationError):
            spec.model_validate({"fleet": long})
        assert spec.model_validate({"fleet": "f" * 50}).fleet == "f" * 50
