"""Version order and range resolution (npm's semver ranges, by `semantic_version.NpmSpec`).

A version that is not semver is coerced the way `semantic_version` does
(`1.2` -> `1.2.0`); one that cannot be coerced still exists and is fetchable
by its exact string, it only never matches a range and sorts below every
semver version. Yanked versions never match a range or `latest`, but an exact
version still resolves to them (a lock file keeps working).
"""

from __future__ import annotations

from collections.abc import Iterable

import semantic_version
from marketplace_protocol.errors import InvalidInput

LATEST = "latest"


def parse(version: str) -> semantic_version.Version | None:
    try:
        return semantic_version.Version.coerce(version)
    except ValueError:
        return None


def order_key(version: str) -> tuple[bool, semantic_version.Version, str]:
    """Semver order; non-semver versions below all of them, by their text."""
    parsed = parse(version)
    return (parsed is not None, parsed or semantic_version.Version("0.0.0"), version)


def ordered(versions: Iterable[str]) -> list[str]:
    return sorted(versions, key=order_key)


def latest(versions: Iterable[str], yanked: frozenset[str] = frozenset()) -> str | None:
    """The newest non-yanked release, or the newest non-yanked pre-release if only those exist."""
    live = [v for v in versions if v not in yanked]
    if not live:
        return None
    releases = [v for v in live if (p := parse(v)) is not None and not p.prerelease]
    return max(releases or live, key=order_key)


def spec_of(text: str) -> semantic_version.NpmSpec:
    try:
        return semantic_version.NpmSpec(text)
    except ValueError as exc:
        raise InvalidInput(f"not a version range: {text[:64]!r}") from exc


def select(
    versions: Iterable[str], wanted: str, yanked: frozenset[str] = frozenset()
) -> str | None:
    """The version `wanted` (an exact version, `latest`, or an npm range) resolves to."""
    held = list(versions)
    if wanted in held:
        return wanted
    if wanted == LATEST:
        return latest(held, yanked)
    spec = spec_of(wanted)
    candidates: dict[semantic_version.Version, str] = {}
    for version in ordered(v for v in held if v not in yanked):
        parsed = parse(version)
        if parsed is not None:
            candidates[parsed] = version
    best = spec.select(candidates)
    return candidates[best] if best is not None else None
