"""Map a container image to a local command line (pure; the table is images.yaml)."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field


class ImageRule(BaseModel):
    """One row of images.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)


class ImageTable(BaseModel):
    """The whole of images.yaml; the first matching rule wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    images: tuple[ImageRule, ...] = Field(default=())


class ImageNotMappedError(LookupError):
    """No rule maps the image; the container waits with reason `ImageNotMapped`."""


def load_table(path: Path) -> ImageTable:
    """Read and validate images.yaml."""
    return ImageTable.model_validate(yaml.safe_load(path.read_text()))


def repository(image: str) -> str:
    """The image reference without registry host, tag and digest.

    A first path component counts as a registry host when it has a dot, a
    colon or is `localhost`, as in the Docker reference grammar.
    """
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        name = rest
    return name


def find_rule(table: ImageTable, image: str) -> ImageRule:
    """The first rule whose glob matches the image's repository."""
    repo = repository(image)
    for rule in table.images:
        if fnmatch.fnmatchcase(repo, rule.match):
            return rule
    raise ImageNotMappedError(
        f"image {image!r} (repository {repo!r}) has no local mapping in images.yaml"
    )


def resolve_argv(
    rule: ImageRule,
    *,
    command: Sequence[str],
    args: Sequence[str],
    root: Path,
    which: Callable[[str], str | None],
) -> list[str]:
    """The argv to execute, with Kubernetes' command/args override rules.

    `which` finds a bare command name (the caller searches the virtualenv
    first, then PATH); relative entrypoint paths are taken from the repo root.
    """
    argv = [*command, *args] if command else [*rule.entrypoint, *(args or rule.cmd)]
    if not argv:
        raise ImageNotMappedError(
            f"image rule {rule.match!r} has no entrypoint and the container sets no command"
        )
    head = argv[0]
    if "/" not in head:
        found = which(head)
        if found is None:
            raise ImageNotMappedError(f"executable {head!r} not found in the virtualenv or PATH")
        argv[0] = found
    elif not os.path.isabs(head):
        argv[0] = str(root / head)
    return argv
