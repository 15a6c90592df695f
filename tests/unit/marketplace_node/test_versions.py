"""Semver resolution (npm ranges via semantic_version), yanks, and the order of versions."""

from __future__ import annotations

import pytest
import semantic_version
from hypothesis import given
from hypothesis import strategies as st
from marketplace_node import versions
from marketplace_protocol.errors import InvalidInput

HELD = ["1.0.0", "1.2.0", "1.2.5", "1.10.0", "2.0.0-rc.1", "2.0.0", "nightly"]


@pytest.mark.parametrize(
    ("wanted", "yanked", "expected"),
    [
        ("^1.2", (), "1.10.0"),
        ("~1.2", (), "1.2.5"),
        ("~1.2", ("1.2.5",), "1.2.0"),
        ("latest", (), "2.0.0"),
        ("latest", ("2.0.0",), "1.10.0"),  # a yanked version is never the latest
        ("2.0.0", ("2.0.0",), "2.0.0"),  # but an exact version still resolves (lock files)
        ("nightly", (), "nightly"),  # not semver: exact only
        (">=3", (), None),
        ("1.x", (), "1.10.0"),
    ],
)
def test_resolution(wanted: str, yanked: tuple[str, ...], expected: str | None) -> None:
    assert versions.select(HELD, wanted, frozenset(yanked)) == expected


def test_a_bad_range_is_a_typed_error() -> None:
    with pytest.raises(InvalidInput):
        versions.select(HELD, "^^nope")


def test_only_prereleases_still_have_a_latest() -> None:
    assert versions.latest(["1.0.0-alpha", "1.0.0-beta"]) == "1.0.0-beta"
    assert versions.latest([]) is None


semvers = st.builds(lambda a, b, c: f"{a}.{b}.{c}", *(st.integers(0, 20) for _ in range(3)))


@given(st.lists(semvers, min_size=1, max_size=12, unique=True), st.data())
def test_a_caret_range_picks_the_highest_compatible_unyanked_version(
    held: list[str], data: st.DataObject
) -> None:
    yanked = frozenset(data.draw(st.lists(st.sampled_from(held))))
    base = data.draw(st.sampled_from(held))
    chosen = versions.select(held, f"^{base}", yanked)
    parsed = semantic_version.Version(base)
    compatible = [
        v
        for v in held
        if v not in yanked and semantic_version.Version(v) in semantic_version.NpmSpec(f"^{base}")
    ]
    assert chosen == (max(compatible, key=semantic_version.Version) if compatible else None)
    if chosen is not None:
        assert semantic_version.Version(chosen) >= parsed


@given(st.lists(st.one_of(semvers, st.sampled_from(["nightly", "r1", "1.0"])), unique=True))
def test_latest_is_the_top_of_the_order_and_non_semver_sorts_below(held: list[str]) -> None:
    order = versions.ordered(held)
    assert versions.latest(held) == (order[-1] if order else None)
    parsed = [versions.parse(v) is not None for v in order]
    assert parsed == sorted(parsed)  # every non-semver version before every semver one
