"""The mounted policy directory: plain and gzip files, ConfigMap symlink swaps, bad files."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
from pathlib import Path

import pytest
from marketplace_node.policy import watch
from marketplace_protocol import errors
from marketplace_protocol.admin import BanEntry, Member, Members, PolicyDocument
from marketplace_protocol.parts import (
    MANIFEST_FILE,
    MAX_PARTS,
    PolicyManifest,
    TornParts,
    join,
    manifest_for,
    part_name,
    split,
)


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


# --- a policy in parts (shard ConfigMaps projected beside the fleet ConfigMap) ------------


def sharded(version: int, *, parts: int = 3, bans: int = 300) -> dict[str, bytes]:
    """The files a projected volume shows for a policy split into `parts` (protocol `parts`)."""
    doc = PolicyDocument(
        version=version,
        hash=f"sha256:{version:064d}",
        bans=[BanEntry(peer_id=f"12D3KooW{version:04d}{i:040d}") for i in range(bans)],
    )
    stream = gzip.compress(doc.model_dump_json(by_alias=True).encode(), mtime=0)
    chunks = split(stream, -(-len(stream) // parts))
    assert len(chunks) == parts
    manifest = manifest_for(stream, parts=parts, version=version, hash=doc.hash)
    return {MANIFEST_FILE: manifest.model_dump_json().encode()} | {
        part_name(i): chunk for i, chunk in enumerate(chunks, start=1)
    }


def test_split_and_join_are_inverse_and_join_checks_every_part() -> None:
    stream = bytes(range(256)) * 10
    for size in (1, 7, 1000, len(stream), len(stream) + 1):
        chunks = split(stream, size)
        assert b"".join(chunks) == stream
        assert all(0 < len(c) <= size for c in chunks)
        assert len(chunks) == -(-len(stream) // size)
    for count in range(1, MAX_PARTS + 1):
        chunks = split(stream, -(-len(stream) // count))
        manifest = manifest_for(stream, parts=len(chunks), version=1, hash=None)
        assert join(manifest, chunks) == stream
    manifest = manifest_for(stream, parts=3, version=1, hash=None)
    a, b, c = split(stream, -(-len(stream) // 3))
    for torn in ([a, b, None], [a, c, b], [a, b], [a, b, c, c], [a, b, c[:-1]], [a, b, c + b"x"]):
        with pytest.raises(TornParts):
            join(manifest, torn)
    with pytest.raises(ValueError, match="positive"):
        split(stream, 0)


def test_whole_parts_are_applied(tmp_path: Path) -> None:
    configmap(tmp_path, sharded(4), 1)
    policy = watch.read_policy(tmp_path)
    assert policy is not None
    assert policy.version == 4
    assert len(policy.bans) == 300


@pytest.mark.parametrize("lagging", ["missing", "stale"])
async def test_torn_parts_wait_for_the_lagging_shard_without_error_or_retry_loop(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    lagging: str,
) -> None:
    """The manifest of v5 arrived, one shard still shows v4's part (or nothing): keep the
    current policy, say so at debug level, and read again only once a file changes."""
    applied: list[int] = []
    new, old = sharded(5), sharded(4)
    torn = dict(new)
    if lagging == "missing":
        del torn[part_name(2)]
    else:
        torn[part_name(2)] = old[part_name(2)]
    configmap(tmp_path, torn, 1)
    reads = 0
    real = watch.read_policy

    def counting(directory: Path) -> PolicyDocument | None:
        nonlocal reads
        reads += 1
        return real(directory)

    monkeypatch.setattr(watch, "read_policy", counting)
    watcher = watch.PolicyDirWatcher(tmp_path, on_policy=lambda d: applied.append(d.version))
    caplog.set_level(logging.DEBUG, logger=watch.__name__)
    assert not await watcher.poll_once()
    assert not await watcher.poll_once()  # nothing changed: not read again
    assert (applied, reads) == ([], 1)
    # Only our logger: asyncio's debug mode may add a slow-callback WARNING on a loaded machine.
    assert [r.levelno for r in caplog.records if r.name == watch.__name__] == [logging.DEBUG]
    assert "not applied yet" in caplog.text

    configmap(tmp_path, new, 2)  # the kubelet caught up with the lagging shard
    assert await watcher.poll_once()
    assert applied == [5]


async def test_a_manifest_older_than_the_applied_policy_is_ignored(tmp_path: Path) -> None:
    """Rollback protection stays the node's: the watcher hands the document on as today."""
    seen: list[int] = []
    current = 6

    def apply(doc: PolicyDocument) -> None:
        if doc.version < current:
            raise errors.StalePolicy(f"{doc.version} is older than {current}")
        seen.append(doc.version)

    watcher = watch.PolicyDirWatcher(tmp_path, on_policy=apply)
    configmap(tmp_path, sharded(5), 1)
    assert not await watcher.poll_once()
    configmap(tmp_path, sharded(7), 2)
    assert await watcher.poll_once()
    assert seen == [7]


def test_single_file_keys_win_over_a_manifest_left_behind(tmp_path: Path) -> None:
    """An operator downgraded to a version without shards writes policy.json.gz only."""
    configmap(tmp_path, sharded(3) | {"policy.json.gz": gzip.compress(doc_bytes(9))}, 1)
    policy = watch.read_policy(tmp_path)
    assert policy is not None
    assert policy.version == 9


def test_manifest_bounds_and_consistency_are_checked(tmp_path: Path) -> None:
    files = sharded(3)
    manifest = PolicyManifest.model_validate_json(files[MANIFEST_FILE])
    too_big = manifest.model_copy(update={"size": watch.MAX_DOCUMENT_BYTES + 1})
    configmap(tmp_path, files | {MANIFEST_FILE: too_big.model_dump_json().encode()}, 1)
    with pytest.raises(errors.PayloadTooLarge):
        watch.read_policy(tmp_path)
    # Whole parts of version 3 under a manifest claiming version 4: an operator bug, refused.
    lying = manifest.model_copy(update={"version": 4})
    configmap(tmp_path, files | {MANIFEST_FILE: lying.model_dump_json().encode()}, 2)
    with pytest.raises(errors.InvalidInput, match="manifest says 4"):
        watch.read_policy(tmp_path)
    configmap(tmp_path, files | {MANIFEST_FILE: b'{"parts": 99}'}, 3)
    with pytest.raises(errors.InvalidInput):
        watch.read_policy(tmp_path)
