"""docs/install.md's permissions table is the chart's RBAC: the chart rendered by helm
for each value set that changes its rules grants exactly the verbs the table lists for
it, role by role. A verb added to either one alone fails here. No cluster needed."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import yaml

from tests.support import docs

from .conftest import CHART, Helm

HEADER = "| rules | when | API group | resources | verbs | used for |"
# The role of the `cluster` rows; every other role holds the `namespaced` ones.
CLUSTER_ROLE = "mpo-marketplace-operator-cluster"
WATCHED = ["fleet-a", "fleet-b"]

# Every value that changes the rules: the scope, and HA (kopf's peering object).
VALUE_SETS: dict[str, dict[str, Any]] = {
    "cluster": {},
    "cluster-ha": {"ha": {"enabled": True}},
    "namespaced": {"scope": "namespaced", "watchNamespaces": WATCHED},
    "namespaced-ha": {"scope": "namespaced", "watchNamespaces": WATCHED, "ha": {"enabled": True}},
}

Grant = tuple[str, str, str]  # (API group, resource, verb)
Render = Callable[[Mapping[str, Any]], list[dict[str, Any]]]


def table(text: str) -> list[dict[str, str]]:
    """The permissions table's rows, by column."""
    lines = text.splitlines()
    start = lines.index(HEADER) + 2  # after the header's separator row
    columns = [c.strip() for c in HEADER.strip("|").split("|")]
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append(dict(zip(columns, cells, strict=True)))
    return rows


def applies(when: str, values: Mapping[str, Any]) -> bool:
    """Whether a row's `when` holds for `values` (the chart's defaults beneath them)."""
    if when == "always":
        return True
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    scope = values.get("scope", defaults["scope"])
    ha = (values.get("ha") or {}).get("enabled", defaults["ha"]["enabled"])
    holds = True
    for condition in when.split(", "):
        if condition == "`ha.enabled`":
            holds = holds and ha
        elif found := re.fullmatch(r"scope `(\w+)`", condition):
            holds = holds and scope == found[1]
        else:
            pytest.fail(f"unknown condition {condition!r} in the table's `when` column")
    return holds


def documented(rows: list[dict[str, str]], values: Mapping[str, Any]) -> dict[str, set[Grant]]:
    """What the table grants with `values`, by role (`namespaced`, `cluster`)."""
    grants: dict[str, set[Grant]] = {"namespaced": set(), "cluster": set()}
    for row in rows:
        if not applies(row["when"], values):
            continue
        group = row["API group"].strip("`")
        group = "" if group == "core" else group
        for resource in row["resources"].split(", "):
            grants[row["rules"]] |= {(group, resource, v) for v in row["verbs"].split()}
    return grants


def granted(role: Mapping[str, Any]) -> set[Grant]:
    """A rendered Role's or ClusterRole's rules as single grants."""
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.fixture(scope="module")
def roles(helm: Helm) -> Render:
    """The Roles and ClusterRoles of the whole chart rendered with the given values."""

    def render(values: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [o for o in helm.template(values) if o["kind"] in {"Role", "ClusterRole"}]

    return render


def role_of(role: Mapping[str, Any]) -> str:
    return "cluster" if role["metadata"]["name"] == CLUSTER_ROLE else "namespaced"


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_the_table_lists_exactly_what_the_chart_grants(roles: Render, name: str) -> None:
    values = VALUE_SETS[name]
    want = documented(table(docs.read("install.md")), values)
    rendered = roles(values)
    kind, count = (
        ("Role", len(WATCHED)) if values.get("scope") == "namespaced" else ("ClusterRole", 1)
    )
    assert Counter((r["kind"], role_of(r)) for r in rendered) == {
        ("ClusterRole", "cluster"): 1,
        (kind, "namespaced"): count,
    }
    for role in rendered:
        assert granted(role) == want[role_of(role)], f"{role['kind']} {role['metadata']['name']}"


def test_a_verb_in_the_table_alone_is_a_difference(roles: Render) -> None:
    """The comparison is not vacuous: one verb more in a row is caught, and only it."""
    text = docs.read("install.md")
    row = next(line for line in text.splitlines() if "| core | pods/status | patch |" in line)
    more = text.replace(row, row.replace("| patch |", "| patch update |"))
    (role,) = [r for r in roles({}) if role_of(r) == "namespaced"]
    assert granted(role) ^ documented(table(more), {})["namespaced"] == {
        ("", "pods/status", "update")
    }
