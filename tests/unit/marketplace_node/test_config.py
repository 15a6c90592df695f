"""Settings: one model is the flags, the environment and the config file, in that order."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest
from marketplace_node import cli
from marketplace_node.api_client import CliError, Exit
from marketplace_node.config import NodeSettings

from tests.support import docs


def test_flags_override_env_override_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "node.yaml"
    file.write_text("port: 1111\nfleet: from-file\nmax_peers: 7\nhost: 127.0.0.5\n")
    monkeypatch.setenv("MARKETPLACE_NODE_PORT", "2222")
    monkeypatch.setenv("MARKETPLACE_NODE_FLEET", "from-env")
    monkeypatch.setenv("MARKETPLACE_NODE_BOOTSTRAP_PEERS", "http://127.0.0.2:1, http://127.0.0.3:1")
    settings = cli.run_settings(["--config", str(file), "--port", "3333"])
    assert settings.port == 3333
    assert settings.fleet == "from-env"
    assert settings.max_peers == 7
    assert settings.host == "127.0.0.5"
    assert settings.bootstrap_peers == ["http://127.0.0.2:1", "http://127.0.0.3:1"]
    assert settings.public_url == "http://127.0.0.5:3333"


def test_the_file_may_be_json_and_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "node.json"
    file.write_text(json.dumps({"drain_timeout_seconds": 4, "peer_networks": ["10.0.0.0/8"]}))
    monkeypatch.setenv("MARKETPLACE_NODE_CONFIG", str(file))
    settings = cli.run_settings([])
    assert settings.drain_timeout_seconds == 4
    assert [str(net) for net in settings.peer_networks] == ["10.0.0.0/8"]


def test_list_flags_take_commas_or_repeats() -> None:
    peers = ["--bootstrap-peers", "http://a:1,http://b:1", "--bootstrap-peers", "http://c:1"]
    settings = cli.run_settings(
        [*peers, "--peer-networks", "127.0.0.0/8", "--liveness-interval-seconds", "0.5"]
    )
    assert settings.bootstrap_peers == ["http://a:1", "http://b:1", "http://c:1"]
    assert [str(net) for net in settings.peer_networks] == ["127.0.0.0/8"]
    assert settings.liveness_interval_seconds == 0.5


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--max-peers", "0"], "max_peers: Input should be greater than or equal to 1"),
        (["--config", "/nonexistent.yaml"], "config: Path does not point to a file"),
        (["--port", "x"], "port: Input should be a valid integer"),
    ],
)
def test_invalid_settings_are_a_usage_error_naming_the_setting(argv: list[str], says: str) -> None:
    with pytest.raises(CliError) as refused:
        cli.run_settings(argv)
    assert refused.value.code == Exit.USAGE
    assert refused.value.message.startswith(f"invalid configuration: {says}")


def test_an_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    file = tmp_path / "node.yaml"
    file.write_text("port: [unclosed\n")
    with pytest.raises(CliError) as refused:
        cli.run_settings(["--config", str(file)])
    assert refused.value.code == Exit.USAGE
    assert "cannot read the config file" in refused.value.message


def test_help_describes_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.run_settings(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, field in NodeSettings.model_fields.items():
        if name == "admin_token":  # never a flag: `ps` would show it
            assert "--admin-token " not in text
            continue
        flag = "--" + name.replace("_", "-")
        assert flag in text, flag
        assert field.description, name
        assert " ".join(field.description.split()) in text, name
        assert f"MARKETPLACE_NODE_{name.upper()}" in text, name


def test_secrets_do_not_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPLACE_NODE_ADMIN_TOKEN", "hunter2")
    settings = cli.run_settings([])
    assert settings.admin_token is not None
    assert "hunter2" not in repr(settings)


def test_listening_everywhere_needs_an_advertised_url() -> None:
    with pytest.raises(pydantic.ValidationError):
        NodeSettings(host="0.0.0.0")
    everywhere = NodeSettings(host="0.0.0.0", advertise_url="http://10.0.0.5:7070")
    assert everywhere.public_url == "http://10.0.0.5:7070"
    assert NodeSettings(host="fd00::5", port=7070).public_url == "http://[fd00::5]:7070"


def test_docs_list_every_setting_with_its_default() -> None:
    """docs/node.md, "Defaults": one row per setting, the default as the model has it."""
    text = docs.read("node.md")
    section = text.split("### Defaults", 1)[1].split("\n### ", 1)[0]
    rows = {
        cells[1].strip("` "): cells[2].strip()
        for line in section.splitlines()
        if line.startswith("| `") and len(cells := line.split("|")) > 3
    }
    assert set(rows) == {name.upper() for name in NodeSettings.model_fields}
    for name, field in NodeSettings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        documented = rows[name.upper()]
        if default in (None, []):
            assert documented.startswith(("none", "`http://HOST:PORT`", "`DATA_DIR/", "`HOST`")), (
                name
            )
        elif isinstance(default, Path):
            assert documented == f"`./{default}`", name
        else:
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            assert documented.strip("`") == shown, name
