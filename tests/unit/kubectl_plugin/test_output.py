"""kubectl's output conventions: column layout, structured dumps, ages."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import yaml
from marketplace_kubectl import output


def test_table_aligns_columns_three_spaces_apart_and_fills_empty_cells() -> None:
    text = output.table(["name", "x"], [["a", ""], ["long-name", "1"]])
    assert text == "NAME        X\na           <none>\nlong-name   1\n"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (125, "2m5s"),
        (600, "10m"),
        (10_799, "179m"),
        (10_800, "3h"),
        (11_100, "3h5m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (50 * 3600, "2d2h"),
        (9 * 86400, "9d"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
        (-5, "0s"),
    ],
)
def test_human_duration_matches_kubectl(seconds: float, shown: str) -> None:
    assert output.human_duration(seconds) == shown


def test_age_of_missing_or_bad_timestamps() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert output.age(None, now) == "<none>"
    assert output.age("yesterday", now) == "<none>"
    assert output.age("2025-12-31T23:59:30Z", now) == "30s"


def test_dump_json_and_yaml_round_trip() -> None:
    data = {"b": [1, {"c": None}], "a": "x"}
    assert json.loads(output.dump(data, "json")) == data
    assert output.dump(data, "json").startswith('{\n    "b"')  # kubectl's indent, key order kept
    assert yaml.safe_load(output.dump(data, "yaml")) == data
    with pytest.raises(ValueError, match="wide"):
        output.dump(data, "wide")
