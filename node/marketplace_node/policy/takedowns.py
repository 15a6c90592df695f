"""Takedowns in force: the fleet policy's content blocks, indexed for the hot path. Pure.

A block matches a package by its content digest, its `name@version`, its name or its
publisher (the key that signed it: an author, or the node of an earlier release). The
node checks every path that serves, announces or copies content against `match`
(docs/packages.md, "Takedowns"); the package's metadata stays in the catalogue, so the
names rule still sees its version and nobody can claim a blocked name or version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from marketplace_protocol.admin import ContentBlock

from marketplace_node.model import PackageMeta


def _empty() -> Mapping[str, ContentBlock]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Takedowns:
    """Blocks by target kind, each keyed by its target (`name@version` for versions)."""

    digests: Mapping[str, ContentBlock] = field(default_factory=_empty)
    packages: Mapping[str, ContentBlock] = field(default_factory=_empty)
    names: Mapping[str, ContentBlock] = field(default_factory=_empty)
    publishers: Mapping[str, ContentBlock] = field(default_factory=_empty)

    def __len__(self) -> int:
        return len(self.digests) + len(self.packages) + len(self.names) + len(self.publishers)

    def match(self, meta: PackageMeta, *, now_wall: float) -> ContentBlock | None:
        """The block in force that covers `meta`, if any (an expired one does not)."""
        if not len(self):
            return None
        for block in (
            self.digests.get(meta.digest),
            self.packages.get(f"{meta.name}@{meta.version}"),
            self.names.get(meta.name),
            self.publishers.get(meta.publisher),
        ):
            if _in_force(block, now_wall):
                return block
        return None

    def blocks_digest(self, digest: str, *, now_wall: float) -> bool:
        return _in_force(self.digests.get(digest), now_wall)


def _in_force(block: ContentBlock | None, now_wall: float) -> bool:
    return block is not None and (
        block.expires_at is None or block.expires_at.timestamp() > now_wall
    )


def compile_takedowns(blocks: Iterable[ContentBlock]) -> Takedowns:
    by_kind: dict[str, dict[str, ContentBlock]] = {
        "digest": {},
        "package": {},
        "name": {},
        "publisher": {},
    }
    for block in blocks:
        for kind, target in by_kind.items():
            value = getattr(block, kind)
            if value is not None:
                target[value] = block
    return Takedowns(
        digests=MappingProxyType(by_kind["digest"]),
        packages=MappingProxyType(by_kind["package"]),
        names=MappingProxyType(by_kind["name"]),
        publishers=MappingProxyType(by_kind["publisher"]),
    )
