"""Author keys on the publisher's side: `key new|show`, the key file and its variable."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from marketplace_node import authors
from marketplace_protocol import identity

from tests.support.node_processes import CLI


def key_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "key", *args], capture_output=True, text=True, env=os.environ | env, check=False
    )


def test_key_new_then_show_through_the_environment_variable(tmp_path: Path) -> None:
    path = tmp_path / "me.pem"
    env = {authors.KEY_ENV: str(path)}
    created = key_cli("new", env=env)
    assert created.returncode == 0, created.stderr
    author = json.loads(created.stdout)["author"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(key_cli("show", env=env).stdout) == {"author": author, "keyFile": str(path)}
    assert identity.from_pem(path.read_bytes()).peer_id == author
    again = key_cli("new", env=env)
    assert again.returncode != 0
    assert "never overwritten" in again.stderr
    assert identity.from_pem(path.read_bytes()).peer_id == author


def test_the_key_path_prefers_the_flag_then_the_variable_then_the_config_dir() -> None:
    env = {authors.KEY_ENV: "/env.pem", "XDG_CONFIG_HOME": "/cfg"}
    assert authors.key_path(Path("/flag.pem"), env) == Path("/flag.pem")
    assert authors.key_path(None, env) == Path("/env.pem")
    assert authors.key_path(None, {"XDG_CONFIG_HOME": "/cfg"}) == Path(
        "/cfg/marketplace-node/author.pem"
    )


def test_a_missing_key_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="key new"):
        authors.load(tmp_path / "none.pem")
