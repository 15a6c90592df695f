"""Volume contents (pure projection) and the atomic ..data directory swap."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from local_kubelet import atomic_dir, projection
from local_kubelet.model import DownwardApiFile, FieldRef, KeyToPath


def test_secret_and_configmap_data_decode() -> None:
    secret = {"data": {"a": base64.b64encode(b"\x00\x01").decode()}}
    assert projection.secret_data(secret) == {"a": b"\x00\x01"}
    cm = {"data": {"t": "text"}, "binaryData": {"b": base64.b64encode(b"bin").decode()}}
    assert projection.configmap_data(cm) == {"t": b"text", "b": b"bin"}
    assert projection.secret_data({}) == {}


def test_every_key_becomes_a_file_unless_items_select() -> None:
    data = {"a": b"1", "b": b"2"}
    assert projection.key_files(data, [], None) == {"a": (b"1", 0o644), "b": (b"2", 0o644)}
    items = [KeyToPath(key="b", path="sub/b.txt", mode=0o600)]
    assert projection.key_files(data, items, 0o640) == {"sub/b.txt": (b"2", 0o600)}
    with pytest.raises(projection.MissingKeyError):
        projection.key_files(data, [KeyToPath(key="zz", path="z")], None)
    assert projection.key_files(data, [KeyToPath(key="zz", path="z")], None, optional=True) == {}


def test_downward_files_take_their_values() -> None:
    items = [DownwardApiFile(path="ns", fieldRef=FieldRef(fieldPath="metadata.namespace"))]
    assert projection.downward_files(items, None, {"metadata.namespace": "x"}) == {
        "ns": (b"x", 0o644)
    }


def test_atomic_write_swaps_the_data_link_and_prunes_old_names(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert atomic_dir.write(target, {"a": (b"1", 0o644), "d/b": (b"2", 0o600)})
    assert (target / "a").read_bytes() == b"1"
    assert (target / "d" / "b").read_bytes() == b"2"
    assert os.readlink(target / "a") == "..data/a"
    first = os.readlink(target / "..data")
    assert not atomic_dir.write(target, {"a": (b"1", 0o644), "d/b": (b"2", 0o600)})
    assert atomic_dir.write(target, {"a": (b"changed", 0o644)})
    assert (target / "a").read_bytes() == b"changed"
    assert not (target / "d").exists()
    assert os.readlink(target / "..data") != first
    assert not (target / first).exists()  # the old generation is removed
    assert ((target / "a").stat().st_mode & 0o777) == 0o644


def test_an_open_directory_handle_sees_the_update(tmp_path: Path) -> None:
    """What a bind mount of the volume directory relies on: same dir, new link target."""
    target = tmp_path / "vol"
    atomic_dir.write(target, {"policy.json": (b"v1", 0o644)})
    fd = os.open(target, os.O_RDONLY)
    try:
        atomic_dir.write(target, {"policy.json": (b"v2", 0o644)})
        with open(f"/proc/self/fd/{fd}/policy.json", "rb") as seen:
            assert seen.read() == b"v2"
    finally:
        os.close(fd)


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../../b"])
def test_paths_may_not_escape(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="escapes"):
        atomic_dir.write(tmp_path / "vol", {name: (b"", 0o644)})
