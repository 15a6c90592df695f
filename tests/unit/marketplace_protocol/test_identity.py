"""Identity: self-certifying peer ids, kept on disk with a private mode."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from marketplace_protocol import identity
from marketplace_protocol.errors import (
    BadSignature,
    InvalidInput,
)


def test_peer_id_is_the_public_key() -> None:
    ident = identity.Identity.generate()
    assert identity.peer_id_of(identity.public_key_of(ident.peer_id)) == ident.peer_id
    identity.verify(ident.peer_id, ident.sign(b"m"), b"m")
    other = identity.Identity.generate()
    with pytest.raises(BadSignature):
        identity.verify(other.peer_id, ident.sign(b"m"), b"m")


@pytest.mark.parametrize("bad", ["", "mp", "xx" + "a" * 52, "mp" + "A" * 52, "mp" + "a" * 51])
def test_malformed_peer_ids_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        identity.public_key_of(bad)


def test_load_or_create_persists_with_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "id" / "ed25519.pem"
    first = identity.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert identity.load_or_create(path).peer_id == first.peer_id
    assert "PRIVATE" not in repr(first)
