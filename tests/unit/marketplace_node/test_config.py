"""Settings precedence: flags over environment over the config file."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
from marketplace_node.config import load


def test_flags_override_env_override_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "node.yaml"
    file.write_text("port: 1111\nfleet: from-file\nmax_peers: 7\nhost: 127.0.0.5\n")
    monkeypatch.setenv("MARKETPLACE_NODE_PORT", "2222")
    monkeypatch.setenv("MARKETPLACE_NODE_FLEET", "from-env")
    monkeypatch.setenv("MARKETPLACE_NODE_BOOTSTRAP_PEERS", "http://127.0.0.2:1, http://127.0.0.3:1")
    settings = load(file, {"port": 3333, "host": None})
    assert settings.port == 3333
    assert settings.fleet == "from-env"
    assert settings.max_peers == 7
    assert settings.host == "127.0.0.5"
    assert settings.bootstrap_peers == ["http://127.0.0.2:1", "http://127.0.0.3:1"]
    assert settings.public_url == "http://127.0.0.5:3333"


def test_invalid_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPLACE_NODE_MAX_PEERS", "0")
    with pytest.raises(pydantic.ValidationError):
        load(None, {})


def test_secrets_do_not_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPLACE_NODE_ADMIN_TOKEN", "hunter2")
    assert "hunter2" not in repr(load(None, {}))


def test_listening_everywhere_needs_an_advertised_url() -> None:
    with pytest.raises(pydantic.ValidationError):
        load(None, {"host": "0.0.0.0"})
    assert load(None, {"host": "0.0.0.0", "advertise_url": "http://10.0.0.5:7070"}).public_url == (
        "http://10.0.0.5:7070"
    )
    assert load(None, {"host": "fd00::5", "port": 7070}).public_url == "http://[fd00::5]:7070"
