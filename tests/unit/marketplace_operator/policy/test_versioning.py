"""Content hashes are stable and versions only grow, across restarts (annotations)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from marketplace_operator.policy.effective import PolicyContent
from marketplace_operator.policy.versioning import (
    HASH_ANNOTATION,
    VERSION_ANNOTATION,
    PolicyVersion,
    content_hash,
    current_version,
    from_annotations,
    next_version,
    stamp,
    to_annotations,
)
from marketplace_protocol.admin import BanEntry, PolicyDocument, RateLimits

BAN = BanEntry(peer_id="peerAAAAAAAA", reason="spam", source="banlist/a")


def test_equal_content_hashes_equal_and_different_differs() -> None:
    a = PolicyContent(bans=(BAN,))
    b = PolicyContent(bans=(BanEntry(peer_id="peerAAAAAAAA", reason="spam", source="banlist/a"),))
    c = PolicyContent(bans=(BAN.model_copy(update={"reason": "abuse"}),))
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash(c)
    assert content_hash(a).startswith("sha256:")


def test_hash_does_not_depend_on_the_timezone_an_expiry_was_written_in() -> None:
    utc = datetime(2030, 1, 1, 12, tzinfo=UTC)
    plus2 = utc.astimezone(timezone(timedelta(hours=2)))
    a = PolicyContent(bans=(BAN.model_copy(update={"expires_at": utc}),))
    b = PolicyContent(bans=(BAN.model_copy(update={"expires_at": plus2.astimezone(UTC)}),))
    assert content_hash(a) == content_hash(b)


def test_limits_are_part_of_the_hash() -> None:
    default = PolicyContent()
    stricter = PolicyContent(rate_limits=RateLimits.model_validate({"maxPendingQueries": 10}))
    assert content_hash(default) != content_hash(stricter)


def test_next_version_table() -> None:
    v3 = PolicyVersion(3, "sha256:a")
    assert next_version(None, "sha256:a") == PolicyVersion(1, "sha256:a")
    assert next_version(v3, "sha256:a") == v3  # unchanged content: same version
    assert next_version(v3, "sha256:b") == PolicyVersion(4, "sha256:b")
    assert next_version(v3, "sha256:b", floor=9) == PolicyVersion(10, "sha256:b")
    # A node is ahead of the stored version (ConfigMap lost): jump past it even for same hash.
    assert next_version(v3, "sha256:a", floor=5) == PolicyVersion(6, "sha256:a")
    assert next_version(None, "sha256:a", floor=7) == PolicyVersion(8, "sha256:a")


@given(
    st.lists(
        st.tuples(st.sampled_from(["sha256:a", "sha256:b", "sha256:c"]), st.integers(0, 50)),
        min_size=1,
        max_size=40,
    )
)
def test_versions_never_go_backwards_and_change_with_content(
    steps: list[tuple[str, int]],
) -> None:
    previous: PolicyVersion | None = None
    for digest, floor in steps:
        current = next_version(previous, digest, floor=floor)
        assert current.version >= floor
        if previous is not None:
            assert current.version >= previous.version
            if current.hash != previous.hash:
                assert current.version > previous.version
        # A restart reads the version back from the annotations: same decision.
        previous = from_annotations(to_annotations(current))
        assert previous == current


def test_unreadable_annotations_read_as_absent() -> None:
    assert from_annotations(None) is None
    assert from_annotations({}) is None
    assert from_annotations({VERSION_ANNOTATION: "x", HASH_ANNOTATION: "sha256:a"}) is None
    assert from_annotations({VERSION_ANNOTATION: "4", HASH_ANNOTATION: "md5:a"}) is None
    assert from_annotations({VERSION_ANNOTATION: "4", HASH_ANNOTATION: "sha256:a"}) == (
        PolicyVersion(4, "sha256:a")
    )


def test_stamp_builds_the_wire_document() -> None:
    content = PolicyContent(bans=(BAN,))
    doc = stamp(content, PolicyVersion(5, content_hash(content)))
    again = PolicyDocument.model_validate_json(doc.model_dump_json(by_alias=True))
    assert again.version == 5
    assert again.bans == [BAN]
    assert again.hash == content_hash(content)


def test_current_version_reads_the_configmap() -> None:
    assert current_version(None) is None
    assert current_version({"metadata": {}}) is None
    cm = {"metadata": {"annotations": to_annotations(PolicyVersion(12, "sha256:abc"))}}
    assert current_version(cm) == 12
