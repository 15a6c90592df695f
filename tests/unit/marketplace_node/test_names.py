"""The names rule: first claim owns, versions never change, owner records; any arrival order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marketplace_node import names, sealing
from marketplace_node.catalogue import Catalogue
from marketplace_node.model import NameRecord, PackageMeta, RecordAction
from marketplace_protocol import identity

from tests.support.signed import package

ALICE, BOB, CAROL = (identity.Identity.generate() for _ in range(3))


def record(
    signer: identity.Identity, action: RecordAction, subject: str, created: int, name: str = "lib"
) -> NameRecord:
    return sealing.sign_record(signer, name=name, action=action, subject=subject, created=created)


def pkg(
    author: identity.Identity, version: str, created: int, content: bytes = b"x"
) -> PackageMeta:
    return package("lib", version, publisher=author, created=created, content=content)


def test_first_claim_owns_the_name_and_a_later_claim_is_refused() -> None:
    first, second = pkg(ALICE, "1.0", 100), pkg(BOB, "9.0", 101)
    state = names.resolve([second, first])
    assert state.owners == {ALICE.peer_id}
    assert state.versions == {"1.0": first.id}
    assert state.refused == {second.id: names.NAME_TAKEN}


def test_a_version_never_changes_its_bytes() -> None:
    first, other_bytes = pkg(ALICE, "1.0", 100, b"a"), pkg(ALICE, "1.0", 200, b"b")
    assert names.resolve([other_bytes, first]).refused == {other_bytes.id: names.VERSION_EXISTS}


def test_co_owners_publish_until_removed_and_transfer_hands_over() -> None:
    entries: list[names.Entry] = [
        pkg(ALICE, "1.0", 100),
        record(ALICE, RecordAction.ADD_OWNER, BOB.peer_id, 110),
        pkg(BOB, "1.1", 120),
        record(BOB, RecordAction.REMOVE_OWNER, ALICE.peer_id, 130),
        pkg(ALICE, "1.2", 140),  # no longer an owner
        record(BOB, RecordAction.TRANSFER, CAROL.peer_id, 150),
        record(BOB, RecordAction.YANK, "1.1", 160),  # Bob gave the name away
        record(CAROL, RecordAction.YANK, "1.0", 170),
        record(CAROL, RecordAction.REMOVE_OWNER, CAROL.peer_id, 180),  # never the last owner
    ]
    state = names.resolve(entries)
    assert state.owners == {CAROL.peer_id}
    assert set(state.versions) == {"1.0", "1.1"}
    assert state.yanked == {"1.0"}
    assert sorted(state.refused.values()) == sorted(
        [names.NAME_TAKEN, names.NOT_OWNER, names.LAST_OWNER]
    )


def test_a_yank_of_a_version_not_yet_published_is_refused() -> None:
    early_yank = record(ALICE, RecordAction.YANK, "2.0", 150)
    state = names.resolve([pkg(ALICE, "1.0", 100), early_yank, pkg(ALICE, "2.0", 200)])
    assert state.refused == {early_yank.id: names.NO_SUCH_VERSION}


def test_a_yank_in_the_same_second_as_its_version_applies_whatever_the_hashes() -> None:
    # Signatures are deterministic, so vary the version: about half of these yanks hash
    # below their package, and the hash-only order refused those `no_such_version`.
    for minor in range(16):
        release = pkg(ALICE, f"1.{minor}", 100)
        yank = record(ALICE, RecordAction.YANK, f"1.{minor}", 100)
        orders: list[list[PackageMeta | NameRecord]] = [[release, yank], [yank, release]]
        for order in orders:
            state = names.resolve(order)
            assert state.refused == {}
            assert state.yanked == {f"1.{minor}"}


def test_racing_claims_with_the_same_timestamp_are_decided_by_hash() -> None:
    a, b = pkg(ALICE, "1.0", 100), pkg(BOB, "1.0", 100)
    winner = min((a, b), key=names.entry_key)
    assert names.resolve([a, b]).owners == names.resolve([b, a]).owners == {winner.publisher}


def test_records_must_name_keys_or_versions_by_action() -> None:
    with pytest.raises(ValueError, match="key"):
        record(ALICE, RecordAction.ADD_OWNER, "1.0", 1)
    with pytest.raises(ValueError, match="version"):
        record(ALICE, RecordAction.YANK, "not a version!", 1)


def test_a_client_entry_never_displaces_what_the_node_holds_even_if_it_sorts_first() -> None:
    catalogue = Catalogue()
    # The held entry sorts last of eight (hashes are uniform, so one held entry alone would
    # sort before all 64 candidates about once in 65 runs); then some candidate sorts first.
    held = max((pkg(ALICE, "1.0", 100, bytes([200 + i])) for i in range(8)), key=names.entry_key)
    catalogue.add(held)
    same_second = [pkg(BOB, "1.0", 100, bytes([i])) for i in range(64)]
    sorts_first = next(p for p in same_second if names.entry_key(p) < names.entry_key(held))
    assert catalogue.refusal(sorts_first) is None  # from a peer: a race the fold decides
    assert catalogue.refusal(sorts_first, settled=True) == names.NAME_TAKEN
    rewrite = next(
        p
        for p in (pkg(ALICE, "1.0", 100, bytes([i])) for i in range(64))
        if names.entry_key(p) < names.entry_key(held)
    )
    assert catalogue.refusal(rewrite, settled=True) == names.VERSION_EXISTS
    assert catalogue.refusal(held, settled=True) is None  # what we hold is no conflict


AUTHORS = (ALICE, BOB, CAROL)


@st.composite
def histories(draw: st.DrawFn) -> list[names.Entry]:
    """Arbitrary packages and records by three authors over two names, clashing times."""
    entries: list[names.Entry] = []
    for _ in range(draw(st.integers(1, 14))):
        author = draw(st.sampled_from(AUTHORS))
        created = draw(st.integers(0, 8))
        name = draw(st.sampled_from(("lib", "app")))
        if draw(st.booleans()):
            version = draw(st.sampled_from(("1.0", "1.1", "2.0")))
            content = draw(st.sampled_from((b"a", b"b")))
            entries.append(
                package(name, version, publisher=author, created=created, content=content)
            )
        else:
            action = draw(st.sampled_from(list(RecordAction)))
            subject = (
                draw(st.sampled_from(AUTHORS)).peer_id
                if action
                in (RecordAction.ADD_OWNER, RecordAction.REMOVE_OWNER, RecordAction.TRANSFER)
                else draw(st.sampled_from(("1.0", "1.1", "2.0")))
            )
            entries.append(record(author, action, subject, created, name))
    return entries


def replay(order: list[names.Entry]) -> tuple[object, ...]:
    """What one node ends with, receiving `order` one at a time and refusing what the rule
    refuses at that moment, with redelivery (anti-entropy) until nothing more is accepted."""
    catalogue = Catalogue()
    progress = True
    while progress:
        progress = False
        for entry in order:
            already = catalogue.names.holds(entry)
            if not already and catalogue.refusal(entry) is None:
                catalogue.add(entry)
                progress = True
    return tuple(
        (name, catalogue.owners(name), sorted(catalogue.ids()))
        for name in sorted(catalogue.names.names())
    )


@settings(max_examples=150, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_every_arrival_order_converges_to_the_same_owners_and_versions(
    entries: list[names.Entry], rng: object
) -> None:
    shuffled = list(entries)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert replay(shuffled) == replay(list(reversed(shuffled)))
    by_name = {e.name for e in entries}
    for name in by_name:
        own = [e for e in entries if e.name == name]
        assert names.resolve(own) == names.resolve(list(reversed(own)))


@settings(max_examples=100, deadline=None)
@given(histories())
def test_the_fold_never_leaves_a_name_without_owners_once_claimed(
    entries: list[names.Entry],
) -> None:
    for name in {e.name for e in entries}:
        state = names.resolve([e for e in entries if e.name == name])
        claimed = any(isinstance(e, PackageMeta) and e.name == name for e in entries)
        assert bool(state.owners) == claimed
        assert len(state.versions) == len(set(state.versions))
