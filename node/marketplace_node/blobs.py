"""Content blobs addressed by SHA-256 under `data_dir/blobs/<digest>`, written crash-safely.

A blob is streamed into a temporary file in the same directory while being
hashed, fsynced, checked against the expected digest and size, and only then
renamed to its final name (and the directory fsynced). A crash at any point
leaves no file under a digest name whose content does not match it. Disk and
hashing work run off the event loop, in batches of `BATCH` bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from marketplace_protocol.errors import IntegrityError, PayloadTooLarge

BATCH = 1024 * 1024


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob("*.tmp"):  # leftovers of a crash mid-write
            stale.unlink(missing_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    async def write(self, chunks: AsyncIterator[bytes], *, digest: str, max_size: int) -> int:
        """Store the stream as blob `digest`; `IntegrityError` if it hashes otherwise."""
        tmp = self.root / f"{secrets.token_hex(8)}.tmp"
        hasher = hashlib.sha256()
        size = 0
        fd = await asyncio.to_thread(os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            buffer = bytearray()
            async for chunk in chunks:
                size += len(chunk)
                if size > max_size:
                    raise PayloadTooLarge(
                        "content larger than declared", details={"max": str(max_size)}
                    )
                buffer += chunk
                if len(buffer) >= BATCH:
                    await asyncio.to_thread(_write_and_hash, fd, bytes(buffer), hasher)
                    buffer.clear()
            await asyncio.to_thread(_write_and_hash, fd, bytes(buffer), hasher)
            await asyncio.to_thread(os.fsync, fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        if hasher.hexdigest() != digest:
            tmp.unlink(missing_ok=True)
            raise IntegrityError("content digest mismatch", details={"expected": digest})
        await asyncio.to_thread(_publish, tmp, self.path(digest), self.root)
        return size


def _write_and_hash(fd: int, data: bytes, hasher: hashlib._Hash) -> None:
    hasher.update(data)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _publish(tmp: Path, final: Path, directory: Path) -> None:
    tmp.replace(final)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
