"""Local bans persisted across restarts: an append-only JSON-lines file in the data directory.

Wiring (two lines in the node core):

    journal = LocalBanJournal(data_dir / "local-bans.jsonl", clock=clock)
    enforcer = PolicyEnforcer(clock, node_id=..., on_local_ban=journal.append)
    ...at start: enforcer.restore_local_bans(journal.load())

Each ban appends one line (~250 bytes, no fsync: a ban lost to a power cut
is re-earned by the next offence, while an fsync per ban would let an
attacker drive our disk). The file is rewritten (temp file, fsync, rename,
so a crash leaves the old or the new file) at load and whenever it holds
twice `capacity` lines, keeping the newest record per target, unexpired,
at most `capacity` of them: its size is bounded whatever the offenders do.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Final

import pydantic
from marketplace_protocol.admin import LocalBan
from marketplace_protocol.clock import Clock

DEFAULT_CAPACITY: Final = 10_000  # the enforcer's local ban cap
LINE_MAX: Final = 4_096

logger = logging.getLogger(__name__)


class LocalBanJournal:
    def __init__(self, path: Path, *, clock: Clock, capacity: int = DEFAULT_CAPACITY) -> None:
        self._path = path
        self._clock = clock
        self._capacity = capacity
        self._lines = 0

    @property
    def path(self) -> Path:
        return self._path

    def load(self) -> list[LocalBan]:
        """The bans still in force, newest per target; compacts the file as a side effect."""
        records = self._read()
        self._write(records)
        return records

    def append(self, record: LocalBan) -> None:
        """Persist one new ban (the enforcer's `on_local_ban`); never raises on disk errors."""
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("a", encoding="utf-8") as journal:
                journal.write(record.model_dump_json(by_alias=True) + "\n")
            self._lines += 1
            if self._lines >= 2 * self._capacity:
                self._write(self._read())
        except OSError as exc:
            logger.warning("local ban not persisted: %s", exc.strerror)

    def _read(self) -> list[LocalBan]:
        latest: dict[str, LocalBan] = {}
        try:
            with self._path.open("rb") as journal:
                for line in journal:
                    record = _parse(line)
                    if record is not None:
                        target = record.peer_id or record.cidr or ""
                        latest.pop(target, None)  # re-insert: dict order becomes recency order
                        latest[target] = record
        except FileNotFoundError:
            return []
        now = self._clock.wall()
        alive = [
            r for r in latest.values() if r.expires_at is None or r.expires_at.timestamp() > now
        ]
        return alive[-self._capacity :]

    def _write(self, records: list[LocalBan]) -> None:
        tmp = self._path.with_name(self._path.name + ".tmp")
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tmp.open("w", encoding="utf-8") as out:
                for record in records:
                    out.write(record.model_dump_json(by_alias=True) + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self._path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._lines = len(records)


def _parse(line: bytes) -> LocalBan | None:
    if len(line) > LINE_MAX or not line.strip():
        return None
    try:
        return LocalBan.model_validate_json(line)
    except pydantic.ValidationError:
        return None  # a torn last line after a crash, or a corrupt one: skip it
