"""Image -> command mapping: reference parsing, rule order, command/args overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from local_kubelet import images
from local_kubelet.config import ROOT

TABLE = images.ImageTable(
    images=(
        images.ImageRule(
            match="marketplace-fleet/node", entrypoint=(".venv/bin/node",), cmd=("run",)
        ),
        images.ImageRule(match="python", cmd=("python3",)),
        images.ImageRule(match="tools/*", entrypoint=("/usr/bin/env",), cmd=("true",)),
    )
)


def which(name: str) -> str | None:
    return {"python": "/venv/bin/python", "python3": "/usr/bin/python3"}.get(name)


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("python", "python"),
        ("python:3.11-slim", "python"),
        ("ghcr.io/marketplace-fleet/node:0.1.0", "marketplace-fleet/node"),
        ("localhost:5000/marketplace-fleet/node:dev", "marketplace-fleet/node"),
        ("localhost/tools/x", "tools/x"),
        ("marketplace-fleet/node@sha256:abc", "marketplace-fleet/node"),
        ("library/python:3", "library/python"),
        ("docker.io/library/python", "library/python"),
    ],
)
def test_repository_strips_registry_tag_and_digest(image: str, repository: str) -> None:
    assert images.repository(image) == repository


def test_first_matching_rule_wins_and_unknown_images_are_not_mapped() -> None:
    assert (
        images.find_rule(TABLE, "ghcr.io/marketplace-fleet/node:1").match
        == "marketplace-fleet/node"
    )
    assert images.find_rule(TABLE, "tools/lint:2").match == "tools/*"
    with pytest.raises(images.ImageNotMappedError, match="nginx"):
        images.find_rule(TABLE, "nginx:1.27")


def resolve(image: str, command: list[str], args: list[str]) -> list[str]:
    rule = images.find_rule(TABLE, image)
    return images.resolve_argv(rule, command=command, args=args, root=Path("/repo"), which=which)


def test_entrypoint_and_cmd_are_used_when_the_container_sets_neither() -> None:
    assert resolve("marketplace-fleet/node:1", [], []) == ["/repo/.venv/bin/node", "run"]


def test_args_replace_cmd_but_keep_the_entrypoint() -> None:
    assert resolve("marketplace-fleet/node:1", [], ["--port", "1"]) == [
        "/repo/.venv/bin/node",
        "--port",
        "1",
    ]


def test_command_replaces_entrypoint_and_cmd_and_is_looked_up() -> None:
    assert resolve("python:3.11-slim", ["python", "-m", "http.server"], ["80"]) == [
        "/venv/bin/python",
        "-m",
        "http.server",
        "80",
    ]


def test_absolute_commands_are_kept() -> None:
    assert resolve("tools/x", ["/bin/echo"], ["hi"]) == ["/bin/echo", "hi"]


def test_a_command_found_nowhere_is_not_mapped() -> None:
    with pytest.raises(images.ImageNotMappedError, match="nope"):
        resolve("python:3", ["nope"], [])


def test_the_shipped_table_maps_the_project_images_to_the_virtualenv() -> None:
    table = images.load_table(ROOT / "hack" / "local_kubelet" / "images.yaml")
    node = images.find_rule(table, "ghcr.io/marketplace-fleet/node:0.1.0")
    argv = images.resolve_argv(node, command=[], args=[], root=ROOT, which=which)
    assert argv == [str(ROOT / ".venv/bin/marketplace-node"), "run"]
    operator = images.find_rule(table, "ghcr.io/marketplace-fleet/operator:0.1.0")
    argv = images.resolve_argv(operator, command=[], args=[], root=ROOT, which=which)
    assert argv == [str(ROOT / ".venv/bin/marketplace-operator")]
    assert images.find_rule(table, "python:3.12").match == "python"
