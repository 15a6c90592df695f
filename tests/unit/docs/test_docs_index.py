"""The docs index lists every page, the README links the index, and relative links resolve."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


GENERATED = {"api-reference.md"}  # schema patterns in it look like links; it has none


def _relative_links(page: Path) -> list[str]:
    text = re.sub(r"`[^`\n]*`", "", page.read_text())  # code spans hold no links
    return [t for t in _LINK.findall(text) if "://" not in t]


def test_the_index_lists_every_page_and_the_readme_links_it() -> None:
    linked = set(_relative_links(DOCS / "README.md"))
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    assert pages <= linked, sorted(pages - linked)
    readme = _relative_links(ROOT / "README.md")
    assert "docs/README.md" in readme
    assert "docs/getting-started.md" in readme


def test_relative_links_point_at_files_that_exist() -> None:
    broken = [
        f"{page.relative_to(ROOT)} -> {target}"
        for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
        if page.name not in GENERATED
        for target in _relative_links(page)
        if not (page.parent / target).exists()
    ]
    assert broken == []
