"""Write a directory of files atomically, the way kubelets update Secret and ConfigMap volumes.

Files live in a timestamped directory; the `..data` symlink points at the
current one and is swapped with rename(2), and each visible name is a
symlink through `..data`. A reader holding the mounted directory sees either
the old set of files or the new one, never a mix.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

DATA = "..data"

Files = Mapping[str, tuple[bytes, int]]
"""Relative path -> (content, mode)."""


def _current(target: Path) -> dict[str, tuple[bytes, int]] | None:
    data = target / DATA
    if not data.is_symlink():
        return None
    found: dict[str, tuple[bytes, int]] = {}
    base = data.resolve()
    for path in base.rglob("*"):
        if path.is_file():
            found[path.relative_to(base).as_posix()] = (
                path.read_bytes(),
                path.stat().st_mode & 0o777,
            )
    return found


def ensure_dir(path: Path) -> Path:
    """mkdir -p (local and quick, so async callers call it inline)."""
    path.mkdir(parents=True, exist_ok=True)
    return path


def write(target: Path, files: Files) -> bool:
    """Make `target` show exactly `files`; False when it already did."""
    for name in files:
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ValueError(f"path {name!r} escapes the volume")
    target.mkdir(parents=True, exist_ok=True)
    if _current(target) == dict(files):
        return False
    stamp = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    stamp.mkdir()
    for name, (content, mode) in files.items():
        path = stamp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    old = (target / DATA).resolve() if (target / DATA).is_symlink() else None
    tmp = target / "..data_tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(stamp.name)
    os.replace(tmp, target / DATA)
    tops = {PurePosixPath(name).parts[0] for name in files}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            link.symlink_to(f"{DATA}/{top}")
    for entry in target.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()
    if old is not None and old != stamp.resolve():
        shutil.rmtree(old, ignore_errors=True)
    return True
