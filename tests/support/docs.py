"""The project's documentation, for tests that hold it to the code."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def read(name: str) -> str:
    """`docs/<name>` as text."""
    return (ROOT / "docs" / name).read_text()
