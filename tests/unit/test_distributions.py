"""The product distributions (protocol/, node/, operator/ pyproject.toml): what each may depend
on and ship, and that each requirement is the root's, whose floors `make test-lowest` tests."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS = ("protocol", "node", "operator")


def project(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    return data


def requirements(directory: str) -> dict[str, Requirement]:
    deps = project(ROOT / directory / "pyproject.toml")["project"]["dependencies"]
    return {r.name.lower(): r for r in map(Requirement, deps)}


@pytest.mark.parametrize("product", PRODUCTS)
def test_each_requirement_is_the_roots(product: str) -> None:
    root = {
        r.name.lower(): str(r)
        for r in map(Requirement, project(ROOT / "pyproject.toml")["project"]["dependencies"])
    }
    for name, requirement in requirements(product).items():
        if name == "marketplace-protocol":
            continue
        assert root.get(name) == str(requirement), (
            f"{product}: {requirement} vs root {root.get(name)}"
        )


def test_the_node_ships_without_kopf_or_the_kubernetes_client() -> None:
    assert {"kopf", "kubernetes"}.isdisjoint(requirements("node"))
    assert {"kopf", "kubernetes", "aiohttp"}.isdisjoint(requirements("protocol"))


@pytest.mark.parametrize("product", PRODUCTS)
def test_product_wheels_hold_their_own_package_only(product: str) -> None:
    found = project(ROOT / product / "pyproject.toml")["tool"]["setuptools"]["packages"]["find"]
    assert found["where"] == ["."]
    assert found["include"] == [f"marketplace_{product}*"]
    shipped = {p.name for p in (ROOT / product).iterdir() if (p / "__init__.py").exists()}
    assert shipped == {f"marketplace_{product}"}  # no local_kubelet, no test harness beside it
    assert not list((ROOT / product).rglob("testing.py"))


def test_node_and_operator_take_the_protocol_from_this_checkout() -> None:
    for product in ("node", "operator"):
        assert str(requirements(product)["marketplace-protocol"].specifier) == "==0.1.0"
        sources = project(ROOT / product / "pyproject.toml")["tool"]["uv"]["sources"]
        assert sources == {"marketplace-protocol": {"path": "../protocol"}}
