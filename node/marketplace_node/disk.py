"""The data volume's free space: a full disk is a typed refusal, never a 500 or a lost write.

Two lines of defence, as Elasticsearch's flood-stage watermark and Kafka's log-dir
failure handling draw them:

* a reserve: content (the large writes) is refused (`StorageFull`, 507 `storage_full`)
  before it is written once less than `reserve` bytes would be left, so the catalogue's
  small writes (announcements from peers, sync cursors) still fit while clients are
  turned away;
* a disk that fills anyway (another writer, a volume smaller than thought) makes a
  write fail with ENOSPC, or SQLite with SQLITE_FULL: `storage_full_from` names such
  failures, and the store and blob store raise `StorageFull` for them. SQLite rolls
  the transaction back and the blob store deletes its partial file, so what was
  acknowledged before stays and nothing half-written remains.

`full` is read at status and scrape time (a `statvfs`, microseconds), so it clears by
itself once space returns.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from marketplace_protocol.errors import StorageFull

RESERVE_FRACTION = 0.05  # of the volume's size ...
RESERVE_MAX = 64 * 1024 * 1024  # ... but no more than this on a large one
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13  # SQLITE_FULL: "insertion failed because database is full"


class Usage(NamedTuple):
    total: int
    free: int


def _disk_usage(path: Path) -> Usage:
    found = shutil.disk_usage(path)
    return Usage(found.total, found.free)


def storage_full_from(exc: BaseException) -> StorageFull | None:
    """A `StorageFull` for a write that failed for want of space (ENOSPC, EDQUOT,
    SQLITE_FULL) anywhere in `exc`'s chain, else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, StorageFull):
            return seen
        if isinstance(seen, OSError) and seen.errno in _FULL_ERRNOS:
            return StorageFull("the data volume is full", details={"errno": str(seen.errno)})
        if isinstance(seen, sqlite3.Error) and getattr(seen, "sqlite_errorcode", None) == (
            _SQLITE_FULL
        ):
            return StorageFull("the data volume is full (the catalogue cannot grow)")
        seen = seen.__cause__ or seen.__context__
    return None


class DataVolume:
    """Free space of the volume that holds `path`."""

    def __init__(self, path: Path, *, usage: Callable[[Path], Usage] = _disk_usage) -> None:
        self._path = path
        self._usage = usage

    def usage(self) -> Usage | None:
        """None if the volume cannot be measured (then nothing is refused on its account)."""
        try:
            return self._usage(self._path)
        except OSError:
            return None

    @staticmethod
    def reserve(total: int) -> int:
        return min(RESERVE_MAX, int(total * RESERVE_FRACTION))

    def full(self) -> bool:
        """Less than the reserve is free: content is being refused."""
        now = self.usage()
        return now is not None and now.free < self.reserve(now.total)

    def admit(self, size: int) -> None:
        """Refuse (`StorageFull`) `size` more bytes of content if they would eat into the
        reserve."""
        now = self.usage()
        if now is not None and now.free - max(0, size) < self.reserve(now.total):
            raise StorageFull(
                "the data volume is full",
                details={"freeBytes": str(now.free), "reserveBytes": str(self.reserve(now.total))},
            )
