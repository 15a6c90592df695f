"""Wire models: limits on every field, canonical signatures, payload/kind consistency."""

from __future__ import annotations

import contextlib

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketplace_node import limits, sealing
from marketplace_node.model import Announcement, AnnouncementKind, Hello, PackageMeta, Query
from marketplace_protocol import identity
from marketplace_protocol.errors import BadSignature

from tests.support.signed import PUBLISHER, package, package_announcement, provider_announcement


def test_package_signature_covers_every_field() -> None:
    meta = package(description="d", tags=("a",))
    sealing.verify_package(meta)
    for change in (
        {"name": "other"},
        {"description": "x"},
        {"tags": ("b",)},
        {"size": 8},
        {"digest": "0" * 64},
    ):
        with pytest.raises(BadSignature):
            sealing.verify_package(meta.model_copy(update=change))


def test_package_id_binds_the_publisher() -> None:
    mine = package()
    theirs = package(publisher=identity.Identity.generate())
    assert mine.id != theirs.id
    assert mine.id == package().id


def test_announcement_signature_and_unsigned_hops() -> None:
    ann = package_announcement(package())
    sealing.verify_announcement(ann)
    hopped = ann.model_copy(update={"hops": 3})
    sealing.verify_announcement(hopped)
    assert hopped.id == ann.id
    with pytest.raises(BadSignature):
        sealing.verify_announcement(ann.model_copy(update={"created": 101}))


def test_relayed_package_from_a_forged_publisher_is_refused() -> None:
    meta = package()
    forged_meta = meta.model_copy(update={"description": "malware"})
    relay = identity.Identity.generate()
    ann = sealing.announce(relay, AnnouncementKind.PACKAGE, created=1, package=forged_meta)
    with pytest.raises(BadSignature):
        sealing.verify_announcement(ann)


def test_a_peer_cannot_announce_another_as_provider() -> None:
    ann = provider_announcement("a" * 32, PUBLISHER)
    other = identity.Identity.generate()
    body = ann.wire() | {"origin": other.peer_id}
    with pytest.raises(pydantic.ValidationError):
        Announcement.model_validate(body)


@pytest.mark.parametrize(
    "change",
    [
        {"name": "x" * (limits.NAME_MAX + 1)},
        {"name": "../etc"},
        {"description": "bell\x07"},
        {"tags": ["t"] * (limits.TAGS_MAX + 1)},
        {"size": -1},
        {"size": limits.CONTENT_MAX_BYTES + 1},
        {"digest": "A" * 64},
        {"publisher": "mp" + "1" * 52},
        {"unknown": 1},
    ],
)
def test_package_limits(change: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        PackageMeta.model_validate(package().wire() | change)


@pytest.mark.parametrize(
    "body",
    [
        {"limit": 0},
        {"limit": limits.PAGE_LIMIT_MAX + 1},
        {"keywords": [" "]},
        {"keywords": ["k"] * (limits.KEYWORDS_MAX + 1)},
        {"minDownloads": -1},
        {"cursor": "c" * (limits.CURSOR_MAX + 1)},
    ],
)
def test_query_limits(body: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        Query.model_validate(body)


@given(st.binary(max_size=2_000))
def test_announcement_decoder_only_raises_validation_errors(raw: bytes) -> None:
    with contextlib.suppress(pydantic.ValidationError):
        Announcement.model_validate_json(raw)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=20,
    )
)
def test_announcement_validator_on_arbitrary_json(value: object) -> None:
    with contextlib.suppress(pydantic.ValidationError):
        Announcement.model_validate({"kind": "package", "package": value})


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("http://127.1.0.5:7070", True),
        ("http://[fd00::5]:7070", True),
        ("https://node-a.example:443", True),
        ("ftp://127.0.0.1:1", False),
        ("http://127.0.0.1:1/path", False),
        ("http://user@127.0.0.1:1", False),
    ],
)
def test_peer_addresses(address: str, ok: bool) -> None:
    body = {"address": address}
    if ok:
        assert Hello.model_validate(body).address == address
    else:
        with pytest.raises(pydantic.ValidationError):
            Hello.model_validate(body)
