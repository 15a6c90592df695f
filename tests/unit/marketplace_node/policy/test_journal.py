"""Local bans survive a restart through the journal; the file stays bounded and crash-tolerant."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from marketplace_node.policy.enforcer import PolicyEnforcer
from marketplace_node.policy.escalation import Offence
from marketplace_node.policy.journal import LocalBanJournal
from marketplace_protocol import errors
from marketplace_protocol.admin import LocalBan, Operation
from marketplace_protocol.clock import FakeClock, to_datetime

NODE = "node-self-000000"


def ban(clock: FakeClock, n: int, *, seconds: float = 600) -> LocalBan:
    at = to_datetime(clock.wall())
    return LocalBan(
        peer_id=f"peer-{n:012d}",
        reason="r",
        offences=1,
        banned_at=at,
        expires_at=at + timedelta(seconds=seconds),
    )


def test_bans_survive_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    journal = LocalBanJournal(tmp_path / "local-bans.jsonl", clock=clock)
    door = PolicyEnforcer(clock, node_id=NODE, on_local_ban=journal.append)
    door.record("peer-aaaaaaaaaaaa", "10.0.0.1", Offence.LOW_REPUTATION)
    door.record(None, "10.0.0.2", Offence.LOW_REPUTATION)

    later = FakeClock(monotonic=1.0, wall=clock.wall() + 5)
    journal = LocalBanJournal(tmp_path / "local-bans.jsonl", clock=later)
    reborn = PolicyEnforcer(later, node_id=NODE, on_local_ban=journal.append)
    assert reborn.restore_local_bans(journal.load()) == 2
    with pytest.raises(errors.PeerBanned):
        reborn.admit("peer-aaaaaaaaaaaa", "192.0.2.1", Operation.SEARCH)
    with pytest.raises(errors.PeerBanned):
        reborn.admit(None, "10.0.0.2", Operation.SEARCH)


def test_expired_duplicate_and_torn_lines_are_dropped(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "bans.jsonl"
    journal = LocalBanJournal(path, clock=clock)
    journal.append(ban(clock, 1, seconds=10))
    journal.append(ban(clock, 2, seconds=1_000))
    journal.append(ban(clock, 2, seconds=2_000))  # the newer record for the same target wins
    with path.open("a") as out:
        out.write('{"peerId": "peer-0000000000')  # a crash mid-line
    clock.advance(20)
    records = LocalBanJournal(path, clock=clock).load()
    assert [(r.peer_id, r.expires_at) for r in records] == [
        ("peer-000000000002", ban(FakeClock(), 2, seconds=2_000).expires_at)
    ]
    assert len(path.read_text().splitlines()) == 1  # compacted on load


def test_the_file_is_bounded(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "bans.jsonl"
    journal = LocalBanJournal(path, clock=clock, capacity=10)
    for n in range(55):
        journal.append(ban(clock, n))
    assert len(path.read_text().splitlines()) < 20
    kept = [r.peer_id for r in LocalBanJournal(path, clock=clock, capacity=10).load()]
    assert kept == [f"peer-{n:012d}" for n in range(45, 55)]


def test_a_missing_file_is_an_empty_journal(tmp_path: Path) -> None:
    assert LocalBanJournal(tmp_path / "none" / "bans.jsonl", clock=FakeClock()).load() == []


def test_disk_errors_do_not_reach_the_request(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    journal = LocalBanJournal(blocker / "bans.jsonl", clock=FakeClock())  # parent is a file
    journal.append(ban(FakeClock(), 1))  # logged, not raised
