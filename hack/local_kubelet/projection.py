"""Which files a Secret, ConfigMap or downward-API volume shows (pure)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from local_kubelet.atomic_dir import Files
from local_kubelet.model import DownwardApiFile, KeyToPath

DEFAULT_MODE = 0o644


class MissingKeyError(KeyError):
    """An `items` entry names a key the object does not have."""


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's decoded data."""
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def configmap_data(configmap: Mapping[str, Any]) -> dict[str, bytes]:
    """A ConfigMap's data and binaryData, as bytes."""
    data = {k: v.encode() for k, v in (configmap.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (configmap.get("binaryData") or {}).items()})
    return data


def key_files(
    data: Mapping[str, bytes],
    items: Sequence[KeyToPath],
    default_mode: int | None,
    *,
    optional: bool = False,
) -> dict[str, tuple[bytes, int]]:
    """Every key as a file, or only the listed `items` at their paths."""
    mode = DEFAULT_MODE if default_mode is None else default_mode
    if not items:
        return {key: (value, mode) for key, value in data.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        if item.key not in data:
            if optional:
                continue
            raise MissingKeyError(item.key)
        files[item.path] = (data[item.key], mode if item.mode is None else item.mode)
    return files


def downward_files(
    items: Sequence[DownwardApiFile],
    default_mode: int | None,
    values: Mapping[str, str],
) -> dict[str, tuple[bytes, int]]:
    """downwardAPI items; `values` maps a fieldRef path (or `resource:NAME`) to its value."""
    mode = DEFAULT_MODE if default_mode is None else default_mode
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        key = (
            item.field_ref.field_path
            if item.field_ref
            else f"resource:{item.resource_field_ref.resource}"
            if item.resource_field_ref
            else ""
        )
        files[item.path] = (values.get(key, "").encode(), mode if item.mode is None else item.mode)
    return files


def merge(*parts: Files) -> dict[str, tuple[bytes, int]]:
    """Projected volumes: later sources win on a clash, as in Kubernetes."""
    merged: dict[str, tuple[bytes, int]] = {}
    for part in parts:
        merged.update(part)
    return merged
