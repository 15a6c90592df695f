"""kopf's watch events parsed by orjson: the swap reaches the line kopf reads with."""

from __future__ import annotations

import inspect
import json

import orjson
from kopf._cogs.clients import api
from marketplace_operator import watchjson

EVENT = {
    "type": "MODIFIED",
    "object": {
        "kind": "Pod",
        "metadata": {"name": "n-0", "labels": {"a": "ü"}, "resourceVersion": "18446744073709"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": None}]},
        "spec": {"priority": -1, "weight": 0.5, "ok": True},
    },
}


def test_kopf_reads_each_watch_line_with_its_modules_json_loads() -> None:
    """If a kopf release parses watch lines another way, the swap would do nothing."""
    source = inspect.getsource(api.stream)
    assert "json.loads(line" in source
    assert inspect.getsource(api).count("json.") == source.count("json.")


def test_install_makes_kopf_parse_with_orjson_the_same_objects() -> None:
    watchjson.install()
    watchjson.install()  # idempotent
    assert api.json.loads is orjson.loads  # type: ignore[attr-defined]
    line = json.dumps(EVENT, ensure_ascii=False).encode()
    assert api.json.loads(line.decode("utf-8")) == json.loads(line)  # type: ignore[attr-defined]


def test_orjson_shares_the_keys_of_separate_events() -> None:
    """The memory point: two parsed events hold one string per key, not two."""
    line = json.dumps(EVENT).encode()
    first, second = orjson.loads(line), orjson.loads(line)
    key = next(k for k in first["object"] if k == "metadata")
    assert key is next(k for k in second["object"] if k == "metadata")
    plain = [json.loads(line), json.loads(line)]
    assert next(k for k in plain[0]["object"] if k == "metadata") is not next(
        k for k in plain[1]["object"] if k == "metadata"
    )
