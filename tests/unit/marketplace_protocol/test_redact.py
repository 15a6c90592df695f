"""No secret in any log line, repr or error: redaction rules, JSON logs with context, settings."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marketplace_protocol import logs, redact
from pydantic import BaseModel, SecretStr

SECRET = "Zq9vX2kP4mW8tY6r"
PEM = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI" + SECRET + "\n-----END PRIVATE KEY-----"
LONG_PEER = "12D3KooWAbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {SECRET}",
        f"authorization: basic {SECRET}",
        f"loaded key {PEM} from disk",
        f"truncated {PEM[:60]}",
        f"GET http://admin:{SECRET}@10.0.0.1:7070/x",
        f"token={SECRET}",
        f'{{"adminToken": "{SECRET}"}}',
        f"password: {SECRET}",
        f"private_key={SECRET}&x=1",
        f"MARKETPLACE_NODE_ADMIN_TOKEN={SECRET}",
        f"api-key = '{SECRET}'",
        f"client_secret:{SECRET}",
    ],
)
def test_credentials_are_redacted(text: str) -> None:
    out = redact.redact_text(text)
    assert SECRET not in out
    assert "REDACTED" in out


@pytest.mark.parametrize(
    "text",
    [
        "search keywords=python tags=web",
        "peer_id=12D3KooWAbCd address=http://10.0.0.5:7070",
        "fetched 12 bytes in 0.3 s",
        "the policy version 7 is applied",
    ],
)
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact.redact_text(text) == text


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(
        alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789",
        min_size=12,
        max_size=64,
    ),
    template=st.sampled_from(
        [
            "Bearer {}",
            "token={}",
            "x-admin-token: {}",
            '"secret": "{}"',
            "https://u:{}@h/p",
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
            "signingKey={}",
        ]
    ),
    prefix=st.text(max_size=20).filter(lambda s: not s[-1:].isalnum()),
)
def test_no_template_leaks_its_secret(secret: str, template: str, prefix: str) -> None:
    assert secret not in redact.redact_text(prefix + template.format(secret))


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("token", True),
        ("adminToken", True),
        ("admin_token_file", True),
        ("private_key", True),
        ("signingKey", True),
        ("password", True),
        ("peer_id", False),
        ("keywords", False),
        ("address", False),
        ("reason", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert redact.is_secret_name(name) is secret


def test_nested_structures_are_redacted_by_field_name() -> None:
    value = {
        "headers": {"Authorization": f"Bearer {SECRET}"},
        "token": SECRET,
        "n": 3,
        "list": [f"token={SECRET}", 1.5, None],
    }
    assert SECRET not in json.dumps(redact.redact_value(value))
    assert redact.redact_value(value)["n"] == 3  # type: ignore[index]


@pytest.mark.parametrize(
    ("peer_id", "shown"),
    [(LONG_PEER, LONG_PEER[:16] + "..."), ("short-peer-id", "short-peer-id"), (None, "-")],
)
def test_peer_ids_are_shortened(peer_id: str | None, shown: str) -> None:
    assert redact.short_peer_id(peer_id) == shown


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        (f"http://user:{SECRET}@10.0.0.5:7070/p2p/v1/x?token={SECRET}", "http://10.0.0.5:7070"),
        ("http://[2001:db8::1]:7070/", "http://[2001:db8::1]:7070"),
        ("http://127.0.0.1", "http://127.0.0.1"),
        ("10.0.0.5:7070", "10.0.0.5:7070"),
        (None, "-"),
    ],
)
def test_addresses_are_shortened(address: str | None, shown: str) -> None:
    assert redact.short_address(address) == shown


# -- JSON logs ------------------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.RedactingFilter())
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_log_lines_are_json_with_bound_context(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    with logs.bind(request_id="r-1", peer_id=LONG_PEER, operation="search"):
        logger.info("served %d results", 3, extra={"address": "http://u:p@10.0.0.9:7070/x"})
    logger.info("outside")
    first, second = lines(stream)
    assert first["msg"] == "served 3 results"
    assert first["level"] == "INFO"
    assert first["request_id"] == "r-1"
    assert first["operation"] == "search"
    assert first["peer_id"] == LONG_PEER[:16] + "..."
    assert first["address"] == "http://10.0.0.9:7070"
    assert "request_id" not in second


def test_no_secret_reaches_a_log_line(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    token = SecretStr(SECRET)
    logger.warning("auth header was Bearer %s", SECRET)
    logger.info("settings %r", {"admin_token": token, "url": f"http://a:{SECRET}@h"})
    logger.info("raw %s", {"admin_token": SECRET})
    logger.info("loaded", extra={"token": SECRET, "identity": PEM})
    with logs.bind(authorization=f"Bearer {SECRET}"):
        logger.info("bound")
    try:
        raise ValueError(f"bad password={SECRET}")
    except ValueError:
        logger.exception("failed")
    output = stream.getvalue()
    assert len(output.splitlines()) == 6
    assert SECRET not in output
    assert "BEGIN PRIVATE KEY" not in output


def test_configure_installs_a_json_handler_on_the_root_logger() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure("WARNING", stream)
    try:
        logging.getLogger("test.configure").warning("token=%s", SECRET)
        logging.getLogger("test.configure").info("dropped")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    (line,) = lines(stream)
    assert line["logger"] == "test.configure"
    assert SECRET not in stream.getvalue()


# -- reprs and errors --------------------------------------------------------------------


def test_secret_fields_never_show_in_repr_str_or_dumps() -> None:
    class Settings(BaseModel):
        admin_token: SecretStr
        host: str = "127.0.0.1"

    model = Settings(admin_token=SecretStr(SECRET))
    for text in (repr(model), str(model), model.model_dump_json(), f"{model!r}"):
        assert SECRET not in text


def test_node_settings_repr_hides_the_admin_token() -> None:
    config = pytest.importorskip("marketplace_node.config")
    node_settings = config.NodeSettings(admin_token=SECRET)
    assert SECRET not in repr(node_settings)
    assert SECRET not in str(node_settings)
    assert SECRET not in node_settings.model_dump_json()
