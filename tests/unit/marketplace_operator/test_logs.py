"""The operator logs JSON lines with the node's redaction, kopf's object as one field."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import kopf
import pytest
from kopf._core.actions.loggers import ObjectLogger
from marketplace_operator import logs

SECRET = "Zq9vX2kP4mW8tY6r"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure("INFO", out)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_our_lines_are_json_and_redacted(stream: io.StringIO) -> None:
    logging.getLogger("marketplace_operator.test").warning(
        "ns/a: drain of http://admin:%s@10.1.0.4:7070 failed; Bearer %s", SECRET, SECRET
    )
    (line,) = lines(stream)
    assert line["level"] == "WARNING"
    assert line["logger"] == "marketplace_operator.test"
    assert line["msg"] == "ns/a: drain of http://[REDACTED]@10.1.0.4:7070 failed; Bearer [REDACTED]"
    assert SECRET not in stream.getvalue()


def test_kopf_object_lines_name_the_object_and_leave_kopf_internals_out(
    stream: io.StringIO,
) -> None:
    body = kopf.Body(
        {
            "apiVersion": "marketplace.p2p.dev/v1alpha1",
            "kind": "MarketplaceNode",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u-1"},
        }
    )
    logger = ObjectLogger(body=body, settings=kopf.OperatorSettings())
    logger.error("Handler failed: token=%s", SECRET)
    (line,) = lines(stream)
    assert line["object"] == "ns/a"
    assert line["kind"] == "MarketplaceNode"
    assert line["logger"] == "kopf.objects"
    assert not {"settings", "k8s_ref", "k8s_skip"} & set(line)
    assert SECRET not in stream.getvalue()
