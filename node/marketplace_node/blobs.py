"""Content blobs addressed by SHA-256 under `data_dir/blobs/<digest>`, written crash-safely.

A blob is streamed into a temporary file in the same directory while being
hashed, fsynced, checked against the expected digest and size, and only then
renamed to its final name (and the directory fsynced). A crash at any point
leaves no file under a digest name whose content does not match it. Disk and
hashing work run off the event loop, in batches of `BATCH` bytes. Content that would
eat into the volume's reserve is refused before it is written, and a write the disk
has no room for ends as `StorageFull` with its partial file gone (`disk`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from marketplace_protocol.errors import IntegrityError, PayloadTooLarge

from marketplace_node.disk import DataVolume, storage_full_from

BATCH = 1024 * 1024


class BlobStore:
    def __init__(self, root: Path, volume: DataVolume | None = None) -> None:
        self.root = root
        self.volume = volume or DataVolume(root.parent)

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob("*.tmp"):  # leftovers of a crash mid-write
            stale.unlink(missing_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def read_small(self, digest: str, limit: int) -> bytes | None:
        """The blob's bytes if we hold it and it is at most `limit` bytes (read on the
        caller's thread: a small read from the page cache), else None."""
        try:
            with self.path(digest).open("rb") as file:
                data = file.read(limit + 1)
        except FileNotFoundError:
            return None
        return data if len(data) <= limit else None

    def size(self, digest: str) -> int | None:
        """The blob's size, None if we do not hold it."""
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            return None

    async def write(
        self, chunks: AsyncIterator[bytes], *, digest: str, max_size: int, expected: int = 0
    ) -> int:
        """Store the stream as blob `digest`; `IntegrityError` if it hashes otherwise,
        `StorageFull` if `expected` bytes do not fit or the disk fills while writing.

        Up to `BATCH` bytes are held in memory and written, fsynced and renamed in one
        trip to a worker thread: a package (usually far smaller) costs one wake-up of the
        thread and of the event loop, not five, which on a busy machine is most of what
        a copy for a publish waits for (docs/packages.md, publish latency)."""
        self.volume.admit(expected)  # a statvfs: microseconds
        try:
            return await self._write(chunks, digest=digest, max_size=max_size)
        except OSError as exc:
            full = storage_full_from(exc)
            if full is None:
                raise
            raise full from exc

    async def _write(self, chunks: AsyncIterator[bytes], *, digest: str, max_size: int) -> int:
        tmp = self.root / f"{secrets.token_hex(8)}.tmp"
        hasher = hashlib.sha256()
        size = 0
        fd: int | None = None
        buffer = bytearray()
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_size:
                    raise PayloadTooLarge(
                        "content larger than declared", details={"max": str(max_size)}
                    )
                buffer += chunk
                if len(buffer) >= BATCH:
                    if fd is None:
                        fd = await asyncio.to_thread(_create, tmp)
                    await asyncio.to_thread(_write_and_hash, fd, bytes(buffer), hasher)
                    buffer.clear()
            rest, opened, fd = bytes(buffer), fd, None  # `_finish` closes it
            await asyncio.to_thread(
                functools.partial(_finish, digest=digest, final=self.path(digest)),
                tmp,
                opened,
                rest,
                hasher,
            )
        except BaseException:
            if fd is not None:
                os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return size


def _create(tmp: Path) -> int:
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)


def _write_and_hash(fd: int, data: bytes, hasher: hashlib._Hash) -> None:
    hasher.update(data)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _finish(
    tmp: Path, fd: int | None, rest: bytes, hasher: hashlib._Hash, *, digest: str, final: Path
) -> None:
    """Write the rest, fsync, close; keep the file under its digest only if it hashes to it."""
    fd = _create(tmp) if fd is None else fd
    try:
        _write_and_hash(fd, rest, hasher)
        os.fsync(fd)
    finally:
        os.close(fd)
    if hasher.hexdigest() != digest:
        raise IntegrityError("content digest mismatch", details={"expected": digest})
    _publish(tmp, final, final.parent)


def _publish(tmp: Path, final: Path, directory: Path) -> None:
    tmp.replace(final)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
