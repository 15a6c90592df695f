"""The API reference (docs/api-reference.md), generated from the CRDs `crdgen` renders.

Every field of every kind with its type, default, whether it is required and its
description (which `crdgen` already ends with the field's bounds, pattern and rules, as
`kubectl explain` shows it), then every CEL rule with its exact expression, and the
printer columns. Pure: CRD dicts in, Markdown out; `main` writes or checks the file.

    python -m marketplace_operator.apiref            # write docs/api-reference.md
    python -m marketplace_operator.apiref --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from marketplace_operator import crdgen
from marketplace_operator.model import CRDS

Schema = Mapping[str, Any]
DEFAULT_OUT = Path("docs/api-reference.md")
HEADER = """\
# API reference

Generated from the CRDs by `python -m marketplace_operator.apiref` (the CRDs themselves
are generated from the models in `operator/marketplace_operator/model/`); do not edit by
hand: a unit test fails when this page and the CRDs disagree. Group
`marketplace.p2p.dev`, version `v1alpha1`; every kind is namespaced.
Bounds, patterns and rule messages at the end of a description are what the API server
enforces (`kubectl explain` shows the same text).

"""


def _cell(text: str) -> str:
    """Text fit for one Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def type_of(schema: Schema) -> str:
    """A field's type in words: `string`, `integer`, `[]object`, `map[string]string`..."""
    if schema.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return "[]" + type_of(schema.get("items") or {})
    if kind == "object" and "additionalProperties" in schema:
        values = schema["additionalProperties"]
        return "map[string]" + (type_of(values) if isinstance(values, Mapping) else "any")
    if schema.get("format"):
        return f"{kind} ({schema['format']})"
    return kind


def _default(schema: Schema) -> str:
    """The default as JSON (`"default"`, `7070`, `false`, `{}`), empty when there is none."""
    return f"`{json.dumps(schema['default'])}`" if "default" in schema else ""


def fields(schema: Schema, prefix: str = "") -> Iterator[tuple[str, Schema, bool]]:
    """(dotted path, schema, required) of every field under `schema`, depth first;
    array items' fields as `path[].field`."""
    required = set(schema.get("required") or ())
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{name}"
        yield path, sub, name in required
        if sub.get("type") == "object":
            yield from fields(sub, f"{path}.")
        elif sub.get("type") == "array" and (sub.get("items") or {}).get("type") == "object":
            yield from fields(sub["items"], f"{path}[].")


def rules(schema: Schema, path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every CEL rule (x-kubernetes-validations) with the path of the field it sits on."""
    for rule in schema.get("x-kubernetes-validations") or ():
        yield path or "(the object)", rule
    for name, sub in (schema.get("properties") or {}).items():
        yield from rules(sub, f"{path}.{name}" if path else name)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from rules(items, f"{path}[]")


def _kind_section(crd: Schema) -> list[str]:
    names = crd["spec"]["names"]
    (version,) = crd["spec"]["versions"]
    root = version["schema"]["openAPIV3Schema"]
    short = ", ".join(f"`{s}`" for s in names.get("shortNames") or ()) or "none"
    out = [
        f"## {names['kind']}",
        "",
        f"`{crd['spec']['group']}/{version['name']}`, plural `{names['plural']}`, "
        f"short names {short}.",
        "",
        root.get("description", ""),
        "",
    ]
    for part in ("spec", "status"):
        schema = root["properties"].get(part)
        if schema is None:
            continue
        out += [
            f"### {names['kind']}.{part}",
            "",
            "| field | type | default | required | description |",
            "|---|---|---|---|---|",
        ]
        for path, sub, required in fields(schema):
            out.append(
                f"| `{path}` | {_cell(type_of(sub))} | {_cell(_default(sub))} | "
                f"{'yes' if required else ''} | {_cell(sub.get('description', ''))} |"
            )
        out.append("")
    found = list(rules(root))
    if found:
        out += [f"### {names['kind']} rules (CEL)", "", "| on | rule | message |", "|---|---|---|"]
        out += [
            f"| `{_cell(on)}` | `{_cell(r['rule'])}` | {_cell(r.get('message', ''))} |"
            for on, r in found
        ]
        out.append("")
    columns = version.get("additionalPrinterColumns") or ()
    if columns:
        out += [
            f"### {names['kind']} columns (`kubectl get`)",
            "",
            "| column | from | shown |",
            "|---|---|---|",
        ]
        out += [
            f"| {c['name']} | `{_cell(c['jsonPath'])}` | "
            f"{'with -o wide' if c.get('priority') else 'always'} |"
            for c in columns
        ]
        out.append("")
    return out


def render(crds: list[Schema]) -> str:
    """The whole page for `crds`, kinds in the order given."""
    toc = [f"- [{c['spec']['names']['kind']}](#{c['spec']['names']['kind'].lower()})" for c in crds]
    body: list[str] = []
    for crd in crds:
        body += _kind_section(crd)
    return HEADER + "\n".join(toc) + "\n\n" + "\n".join(body).rstrip() + "\n"


def page() -> str:
    return render([crdgen.render(info) for info in CRDS])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate docs/api-reference.md from the CRDs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the Markdown file")
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = page()
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(
                f"{args.out} is out of date: python -m marketplace_operator.apiref", file=sys.stderr
            )
            return 1
        return 0
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
