"""The mounted policy directory: plain and gzip files, ConfigMap symlink swaps, bad files."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
from pathlib import Path

import pytest
from marketplace_node import errors
from marketplace_node.admin.models import Member, Members, PolicyDocument
from marketplace_node.policy import watch


def write_doc(path: Path, version: int, *, compress: bool = False) -> None:
    data = PolicyDocument(version=version).model_dump_json(by_alias=True).encode()
    path.write_bytes(gzip.compress(data) if compress else data)


def configmap(root: Path, files: dict[str, bytes], generation: int) -> None:
    """Lay files out as the kubelet does: a timestamped dir, `..data` -> it, names -> `..data/`."""
    target = root / f"..2026_11_25_{generation:02d}"
    target.mkdir()
    for name, data in files.items():
        (target / name).write_bytes(data)
    tmp = root / "..data_tmp"
    tmp.symlink_to(target.name)
    os.replace(tmp, root / "..data")
    for name in files:
        link = root / name
        if not link.is_symlink():
            link.symlink_to(Path("..data") / name)


def doc_bytes(version: int) -> bytes:
    return PolicyDocument(version=version).model_dump_json(by_alias=True).encode()


def test_reads_plain_and_gzip_policy(tmp_path: Path) -> None:
    assert watch.read_policy(tmp_path) is None
    write_doc(tmp_path / "policy.json.gz", 4, compress=True)
    policy = watch.read_policy(tmp_path)
    assert policy is not None
    assert policy.version == 4
    write_doc(tmp_path / "policy.json", 5)
    policy = watch.read_policy(tmp_path)
    assert policy is not None
    assert policy.version == 5  # policy.json wins when both are present


def test_refuses_oversized_files_and_gzip_bombs(tmp_path: Path) -> None:
    (tmp_path / "policy.json.gz").write_bytes(gzip.compress(b" " * 10_000))
    with pytest.raises(errors.PayloadTooLarge):
        watch.read_bounded(tmp_path / "policy.json.gz", limit=1_000)
    (tmp_path / "policy.json").write_bytes(b" " * 2_000)
    with pytest.raises(errors.PayloadTooLarge):
        watch.read_bounded(tmp_path / "policy.json", limit=1_000)
    (tmp_path / "bad.json.gz").write_bytes(b"not gzip")
    with pytest.raises(errors.InvalidInput):
        watch.read_bounded(tmp_path / "bad.json.gz")


def test_invalid_document_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text('{"version": -1}')
    with pytest.raises(errors.InvalidInput):
        watch.read_policy(tmp_path)


async def test_watcher_follows_configmap_symlink_swaps(tmp_path: Path) -> None:
    applied: list[int] = []
    members: list[Members] = []
    watcher = watch.PolicyDirWatcher(
        tmp_path, on_policy=lambda d: applied.append(d.version), on_members=members.append
    )
    assert not await watcher.poll_once()  # nothing mounted yet

    crew = Members(members=[Member(address="http://127.1.0.5:7070")])
    configmap(
        tmp_path,
        {"policy.json": doc_bytes(1), "members.json": crew.model_dump_json(by_alias=True).encode()},
        1,
    )
    assert await watcher.poll_once()
    assert applied == [1]
    assert members == [crew]
    assert not await watcher.poll_once()  # unchanged: no second delivery

    configmap(
        tmp_path,
        {"policy.json": doc_bytes(2), "members.json": crew.model_dump_json(by_alias=True).encode()},
        2,
    )
    assert await watcher.poll_once()
    assert applied == [1, 2]


async def test_watcher_skips_broken_and_stale_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse_old(doc: PolicyDocument) -> None:
        if doc.version < 3:
            raise errors.StalePolicy("older than 3")
        seen.append(doc.version)

    seen: list[int] = []
    watcher = watch.PolicyDirWatcher(tmp_path, on_policy=refuse_old)
    (tmp_path / "policy.json").write_text("{not json")
    assert not await watcher.poll_once()
    assert "invalid_input" in caplog.text
    configmap_free = tmp_path / "policy.json"
    configmap_free.unlink()
    write_doc(configmap_free, 2)
    assert not await watcher.poll_once()
    configmap_free.unlink()
    write_doc(configmap_free, 3)
    assert await watcher.poll_once()
    assert seen == [3]


async def test_watcher_awaits_async_callbacks(tmp_path: Path) -> None:
    got: list[int] = []

    async def on_policy(doc: PolicyDocument) -> None:
        got.append(doc.version)

    write_doc(tmp_path / "policy.json", 9)
    assert await watch.PolicyDirWatcher(tmp_path, on_policy=on_policy).poll_once()
    assert got == [9]


async def test_run_survives_a_failing_callback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    delivered = asyncio.Event()

    def flaky(doc: PolicyDocument) -> None:
        calls.append(doc.version)
        delivered.set()
        if len(calls) == 1:
            raise RuntimeError("bug in a callback")

    write_doc(tmp_path / "policy.json", 1)
    watcher = watch.PolicyDirWatcher(tmp_path, on_policy=flaky, period=0.01)
    task = asyncio.create_task(watcher.run())
    try:
        async with asyncio.timeout(5):
            await delivered.wait()
            delivered.clear()
            (tmp_path / "policy.json").unlink()
            write_doc(tmp_path / "policy.json", 22)
            await delivered.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert calls == [1, 22]
    assert "bug in a callback" in caplog.text


async def test_a_read_error_is_retried_on_the_next_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got: list[int] = []
    write_doc(tmp_path / "policy.json", 4)
    watcher = watch.PolicyDirWatcher(tmp_path, on_policy=lambda d: got.append(d.version))
    real = watch.read_policy

    def vanishing(directory: Path) -> PolicyDocument | None:
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(watch, "read_policy", vanishing)
    assert not await watcher.poll_once()
    monkeypatch.setattr(watch, "read_policy", real)
    assert await watcher.poll_once()  # same file, not skipped as already seen
    assert got == [4]
