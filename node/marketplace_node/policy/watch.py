"""Reads the mounted policy directory at start and again whenever its files change.

The fleet ConfigMap is mounted as a directory: `policy.json` (or
`policy.json.gz` when large) and `members.json`. The kubelet updates it by
writing a new timestamped directory and swapping the `..data` symlink, so
the visible files are symlinks whose target changes: `os.stat` follows them,
and a change of (device, inode, mtime, size) is the signal. Polling once a
second costs one `stat` per file and needs no inotify dependency; the push
through the admin API is the fast path, this is the restart-safe one.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

import pydantic

from marketplace_node import errors
from marketplace_node.admin.models import Members, PolicyDocument

POLICY_FILES: Final = ("policy.json", "policy.json.gz")  # the first one present wins
MEMBERS_FILE: Final = "members.json"
MAX_DOCUMENT_BYTES: Final = 64 * 1024 * 1024
"""Largest (decompressed) policy or members document read: 50,000 bans are ~15 MB."""

logger = logging.getLogger(__name__)

Signature = tuple[int, int, int, int] | None
M = TypeVar("M", bound=pydantic.BaseModel)
D = TypeVar("D")


def signature(path: Path) -> Signature:
    """What changes when a file (or the symlink chain to it) is replaced; None if absent."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def gunzip_bounded(raw: bytes, limit: int, *, what: str) -> bytes:
    """Inflate gzip data, refusing more than `limit` bytes of output (compression bombs)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise errors.InvalidInput(f"{what} is not valid gzip") from exc
    if len(data) > limit:
        raise errors.PayloadTooLarge(f"{what} inflates beyond {limit} bytes")
    return data


def read_bounded(path: Path, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """A file's bytes, gunzipped when named `.gz`, refusing more than `limit`."""
    if path.stat().st_size > limit:
        raise errors.PayloadTooLarge(f"{path.name} exceeds {limit} bytes")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        return gunzip_bounded(raw, limit, what=path.name)
    if len(raw) > limit:
        raise errors.PayloadTooLarge(f"{path.name} exceeds {limit} bytes")
    return raw


def policy_file(directory: Path) -> Path | None:
    for name in POLICY_FILES:
        path = directory / name
        if path.exists():
            return path
    return None


def read_policy(directory: Path) -> PolicyDocument | None:
    """The mounted policy document, None if there is none yet; `InvalidInput` if broken."""
    path = policy_file(directory)
    if path is None:
        return None
    return _parse(PolicyDocument, path)


def read_members(directory: Path) -> Members | None:
    path = directory / MEMBERS_FILE
    if not path.exists():
        return None
    return _parse(Members, path)


def _parse(model: type[M], path: Path) -> M:
    try:
        return model.model_validate_json(read_bounded(path))
    except pydantic.ValidationError as exc:
        raise errors.InvalidInput(f"{path.name}: {exc.error_count()} validation errors") from exc


class PolicyDirWatcher:
    """Polls the directory; calls `on_policy` / `on_members` with each new valid document.

    A broken or stale file is logged and skipped: the node keeps the policy it
    has, since a newer one is only ever a push or a kubelet sync away.
    """

    def __init__(
        self,
        directory: Path,
        *,
        on_policy: Callable[[PolicyDocument], object],
        on_members: Callable[[Members], object] | None = None,
        period: float = 1.0,
    ) -> None:
        self._directory = directory
        self._on_policy = on_policy
        self._on_members = on_members
        self._period = period
        self._seen: dict[str, Signature] = {}

    async def poll_once(self) -> bool:
        """Check once; True if a changed document was handed to a callback."""
        changed = False
        path = policy_file(self._directory)
        if path is not None and self._changed("policy", path):
            changed |= await self._deliver(f"policy:{path.name}", read_policy, self._on_policy)
        members = self._directory / MEMBERS_FILE
        if self._on_members is not None and self._changed("members", members):
            changed |= await self._deliver(
                f"members:{MEMBERS_FILE}", read_members, self._on_members
            )
        return changed

    def _changed(self, what: str, path: Path) -> bool:
        sig = signature(path)
        key = f"{what}:{path.name}"
        if sig is None or self._seen.get(key) == sig:
            return False
        self._seen[key] = sig
        return True

    async def _deliver(
        self, key: str, read: Callable[[Path], D | None], callback: Callable[[D], object]
    ) -> bool:
        try:
            doc = await asyncio.to_thread(read, self._directory)
            if doc is None:
                return False
            result = callback(doc)
            if inspect.isawaitable(result):
                await result
        except OSError as exc:
            self._seen.pop(key, None)  # maybe caught mid-swap: read it again next time
            logger.warning("%s unreadable: %s", key, exc.strerror)
            return False
        except errors.StalePolicy as exc:
            logger.info("%s not applied: %s", key, exc.message)
            return False
        except errors.NodeError as exc:  # invalid, too large, or a conflicting version
            logger.warning("%s not applied (%s): %s", key, exc.code, exc.message)
            return False
        return True

    async def run(self) -> None:
        """Poll until cancelled (run it as a background task; cancel it on stop).

        A failure of one poll is logged and the next poll goes ahead: a bug in
        a callback must not end the watching for the rest of the process.
        """
        while True:
            try:
                await self.poll_once()
            except Exception:
                logger.exception("polling %s failed", self._directory)
            await asyncio.sleep(self._period)
