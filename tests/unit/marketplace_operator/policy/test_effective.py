"""effective_policy: bans unioned, expired dropped, longest wins, allows lift; limits merge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marketplace_operator.model.banlist import BanList, BanListEntry, BanListSpec
from marketplace_operator.model.ratelimitpolicy import RateLimitPolicy, RateLimitPolicySpec
from marketplace_operator.policy.effective import (
    ProblemKind,
    effective_bans,
    effective_policy,
    merge_limits,
)
from marketplace_operator.policy.versioning import canonical_json, content_hash
from marketplace_protocol.admin import Escalation, Limit, Operation, RateLimits

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
A, B = "peerAAAAAAAA", "peerBBBBBBBB"


def banlist(
    name: str, *entries: dict[str, Any], fleet: str = "*", age: timedelta = timedelta(hours=1)
) -> BanList:
    spec = BanListSpec.model_validate({"fleet": fleet, "entries": list(entries)})
    return BanList(namespace="ns", name=name, created=NOW - age, spec=spec)


def policy(name: str, **spec: Any) -> RateLimitPolicy:
    return RateLimitPolicy(namespace="ns", name=name, spec=RateLimitPolicySpec.model_validate(spec))


def at(**delta: float) -> str:
    return (NOW + timedelta(**delta)).isoformat()


def targets(lists: list[BanList], fleet: str = "blue") -> dict[str, tuple[str | None, str]]:
    """target -> (expiresAt, source) of the effective bans."""
    return {
        (b.peer_id or b.cidr or ""): (
            None if b.expires_at is None else b.expires_at.isoformat(),
            b.source,
        )
        for b in effective_bans(fleet, lists, NOW)
    }


# -- bans: a table of cases --------------------------------------------------------------

BAN_CASES: list[tuple[str, list[BanList], dict[str, tuple[str | None, str]]]] = [
    ("no lists, no bans", [], {}),
    (
        "union of two lists",
        [banlist("x", {"peerId": A}), banlist("y", {"cidr": "10.0.0.0/8"})],
        {A: (None, "banlist/x"), "10.0.0.0/8": (None, "banlist/y")},
    ),
    (
        "expired entries are dropped, at the exact instant too",
        [
            banlist(
                "x",
                {"peerId": A, "expiresAt": at(seconds=0)},
                {"peerId": B, "expiresAt": at(seconds=-5)},
            )
        ],
        {},
    ),
    (
        "duration counts from the list's creation",
        [banlist("x", {"peerId": A, "duration": "30m"}, {"peerId": B, "duration": "2h"})],
        {B: (at(hours=1), "banlist/x")},
    ),
    (
        "longest-lived wins across lists",
        [
            banlist("x", {"peerId": A, "expiresAt": at(hours=1), "reason": "short"}),
            banlist("y", {"peerId": A, "expiresAt": at(hours=5), "reason": "long"}),
        ],
        {A: (at(hours=5), "banlist/y")},
    ),
    (
        "until-lifted beats any date",
        [
            banlist("x", {"peerId": A, "expiresAt": at(days=3000)}),
            banlist("y", {"peerId": A}),
        ],
        {A: (None, "banlist/y")},
    ),
    (
        "a tie goes to the first source name",
        [
            banlist("y", {"peerId": A, "expiresAt": at(hours=1)}),
            banlist("x", {"peerId": A, "expiresAt": at(hours=1)}),
        ],
        {A: (at(hours=1), "banlist/x")},
    ),
    (
        "an allow lifts bans of the same target in any list, auto lists too",
        [
            banlist("blue-auto", {"peerId": A}, fleet="blue"),
            banlist("x", {"peerId": A, "expiresAt": at(hours=2)}, {"peerId": B}),
            banlist("lift", {"peerId": A, "action": "allow", "reason": "false positive"}),
        ],
        {B: (None, "banlist/x")},
    ),
    (
        "an expired allow lifts nothing",
        [
            banlist("x", {"peerId": A}),
            banlist("lift", {"peerId": A, "action": "allow", "expiresAt": at(minutes=-1)}),
        ],
        {A: (None, "banlist/x")},
    ),
    (
        "an allow of a peer does not lift a network ban, nor the reverse",
        [
            banlist("x", {"cidr": "10.0.0.0/8"}, {"peerId": A}),
            banlist(
                "lift", {"peerId": B, "action": "allow"}, {"cidr": "10.1.0.0/16", "action": "allow"}
            ),
        ],
        {"10.0.0.0/8": (None, "banlist/x"), A: (None, "banlist/x")},
    ),
    (
        "networks compare in canonical form",
        [
            banlist("x", {"cidr": "10.9.9.9/8"}),
            banlist("lift", {"cidr": "10.0.0.0/8", "action": "allow"}),
        ],
        {},
    ),
    (
        "lists of other fleets do not apply; * does",
        [
            banlist("green", {"peerId": A}, fleet="green"),
            banlist("all", {"peerId": B}),
        ],
        {B: (None, "banlist/all")},
    ),
]


@pytest.mark.parametrize(
    ("lists", "expected"), [c[1:] for c in BAN_CASES], ids=[c[0] for c in BAN_CASES]
)
def test_bans(lists: list[BanList], expected: dict[str, tuple[str | None, str]]) -> None:
    assert targets(lists) == expected


# -- bans: properties --------------------------------------------------------------------

PEERS = [f"peer{c * 8}" for c in "ABCDEFGH"]


@st.composite
def entries(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, Any] = {"peerId": draw(st.sampled_from(PEERS))}
    if draw(st.booleans()):
        fields["cidr"] = draw(st.sampled_from(["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"]))
        del fields["peerId"]
    expiry = draw(st.one_of(st.none(), st.integers(-3, 5)))
    if expiry is not None:
        fields["expiresAt"] = at(hours=expiry)
    if draw(st.integers(0, 5)) == 0:
        fields["action"] = "allow"
    fields["reason"] = draw(st.sampled_from(["", "spam", "abuse"]))
    return fields


@st.composite
def banlists(draw: st.DrawFn) -> list[BanList]:
    count = draw(st.integers(0, 4))
    return [
        banlist(
            f"list-{i}",
            *draw(st.lists(entries(), max_size=8)),
            fleet=draw(st.sampled_from(["*", "blue", "green"])),
        )
        for i in range(count)
    ]


@given(banlists(), st.randoms())
def test_order_of_lists_and_entries_does_not_matter(lists: list[BanList], rnd: Any) -> None:
    shuffled = []
    for bl in lists:
        items = list(bl.spec.entries)
        rnd.shuffle(items)
        shuffled.append(
            bl.model_copy(update={"spec": bl.spec.model_copy(update={"entries": items})})
        )
    rnd.shuffle(shuffled)
    assert effective_bans("blue", lists, NOW) == effective_bans("blue", shuffled, NOW)
    one = effective_policy("blue", banlists=lists, ratelimitpolicies=[], now=NOW)
    two = effective_policy("blue", banlists=shuffled, ratelimitpolicies=[], now=NOW)
    assert one.content is not None
    assert two.content is not None
    assert content_hash(one.content) == content_hash(two.content)


@given(banlists())
def test_every_effective_ban_is_in_force_unique_and_justified(lists: list[BanList]) -> None:
    bans = effective_bans("blue", lists, NOW)
    selected = [e for bl in lists if bl.spec.selects("blue") for e in bl.spec.entries]
    allowed = {
        e.target
        for e in selected
        if e.action == "allow" and (e.expires_at is None or e.expires_at > NOW)
    }
    keys = [b.peer_id or b.cidr for b in bans]
    assert len(keys) == len(set(keys))
    assert keys == sorted(keys, key=lambda k: ("peer:" if k in PEERS else "cidr:") + str(k))
    for ban in bans:
        assert ban.expires_at is None or ban.expires_at > NOW
        target = f"peer:{ban.peer_id}" if ban.peer_id else f"cidr:{ban.cidr}"
        assert target not in allowed
        candidates = [
            e
            for e in selected
            if e.target == target
            and e.action == "ban"
            and (e.expires_at is None or e.expires_at > NOW)
        ]
        assert candidates, "a ban without a source entry"
        if ban.expires_at is not None:
            assert all(
                e.expires_at is not None and e.expires_at <= ban.expires_at for e in candidates
            )
    # Completeness: every target with a ban in force and no allow is present.
    wanted = {
        e.target
        for e in selected
        if e.action == "ban"
        and (e.expires_at is None or e.expires_at > NOW)
        and e.target not in allowed
    }
    assert {f"peer:{b.peer_id}" if b.peer_id else f"cidr:{b.cidr}" for b in bans} == wanted


@given(banlists(), st.integers(0, 10))
def test_time_only_removes_bans_unless_an_allow_ends(lists: list[BanList], hours: int) -> None:
    """Moving `now` forward adds a ban only where an allow entry expired in between."""
    later_now = NOW + timedelta(hours=hours)
    earlier = {
        f"peer:{b.peer_id}" if b.peer_id else f"cidr:{b.cidr}"
        for b in effective_bans("blue", lists, NOW)
    }
    later = {
        f"peer:{b.peer_id}" if b.peer_id else f"cidr:{b.cidr}"
        for b in effective_bans("blue", lists, later_now)
    }
    lapsed_allows = {
        e.target
        for bl in lists
        if bl.spec.selects("blue")
        for e in bl.spec.entries
        if e.action == "allow" and e.expires_at is not None and NOW < e.expires_at <= later_now
    }
    assert later - earlier <= lapsed_allows


# -- limits ------------------------------------------------------------------------------


def test_no_policy_means_node_defaults() -> None:
    limits, sources, problems = merge_limits("blue", [])
    assert limits == RateLimits()
    assert sources == {}
    assert problems == ()


def test_limits_merge_field_by_field_by_precedence() -> None:
    strong = policy("strong", priority=10, perPeer={"search": {"rate": 1, "burst": 2}})
    weak = policy(
        "weak",
        priority=0,
        perPeer={"search": {"rate": 100, "burst": 100}, "fetch": {"rate": 3, "burst": 4}},
        maxPendingQueries=7,
        escalation={"threshold": 5},
    )
    limits, sources, _ = merge_limits("blue", [weak, strong])
    assert limits is not None
    assert limits.per_peer[Operation.SEARCH] == Limit(rate=1, burst=2)
    assert limits.per_peer[Operation.FETCH] == Limit(rate=3, burst=4)
    assert limits.per_peer[Operation.GOSSIP] == RateLimits().per_peer[Operation.GOSSIP]
    assert limits.max_pending_queries == 7
    assert limits.escalation == Escalation(threshold=5)
    assert sources == {
        "perPeer.search": "strong",
        "perPeer.fetch": "weak",
        "maxPendingQueries": "weak",
        "escalation.threshold": "weak",
    }


@pytest.mark.parametrize(
    ("policies", "winner"),
    [
        (
            [
                policy("a", priority=1, maxPendingQueries=1),
                policy("b", priority=2, maxPendingQueries=2),
            ],
            "b",
        ),
        (
            [
                policy("a", fleet="*", maxPendingQueries=1),
                policy("b", fleet="blue", maxPendingQueries=2),
            ],
            "b",
        ),
        ([policy("b", maxPendingQueries=2), policy("a", maxPendingQueries=1)], "a"),
        # priority beats specificity
        (
            [
                policy("a", fleet="*", priority=5, maxPendingQueries=1),
                policy("b", fleet="blue", maxPendingQueries=2),
            ],
            "a",
        ),
        # a policy of another fleet never applies
        (
            [
                policy("a", fleet="green", priority=9, maxPendingQueries=1),
                policy("b", maxPendingQueries=2),
            ],
            "b",
        ),
    ],
)
def test_precedence(policies: list[RateLimitPolicy], winner: str) -> None:
    limits, sources, _ = merge_limits("blue", policies)
    assert sources["maxPendingQueries"] == winner
    assert limits is not None
    assert limits.max_pending_queries == {"a": 1, "b": 2}[winner]


@pytest.mark.parametrize(
    ("policies", "seconds", "winner"),
    [
        ([], 1.0, None),  # no policy sets it: the node default
        (
            [
                policy("a", priority=1, escalation={"tarpitSeconds": 5}),
                policy("b", priority=2, escalation={"tarpitSeconds": 0}),
            ],
            0.0,  # zero is a value, not "unset": it wins like any other
            "b",
        ),
        (
            [
                policy("a", fleet="*", escalation={"tarpitSeconds": 0}),
                policy("b", fleet="blue", escalation={"tarpitSeconds": 2.5}),
            ],
            2.5,
            "b",
        ),
        (
            [
                policy("b", escalation={"tarpitSeconds": 3}),
                policy("a", escalation={"tarpitSeconds": 0.5}),
            ],
            0.5,
            "a",
        ),
        # a stronger policy that sets other escalation leaves leaves this one to the weaker
        (
            [
                policy("a", priority=9, escalation={"threshold": 5}),
                policy("b", escalation={"tarpitSeconds": 0}),
            ],
            0.0,
            "b",
        ),
    ],
)
def test_tarpit_seconds_merge_by_precedence(
    policies: list[RateLimitPolicy], seconds: float, winner: str | None
) -> None:
    limits, sources, _ = merge_limits("blue", policies)
    assert limits is not None
    assert limits.escalation.tarpit_seconds == seconds
    assert sources.get("escalation.tarpitSeconds") == winner


def test_a_merge_that_cannot_apply_is_a_problem_and_no_content() -> None:
    """Each policy is valid alone; merged, firstBan > maxBan: blame both, apply nothing."""
    a = policy("short-max", priority=10, escalation={"maxBanSeconds": 30})
    b = policy("long-first", escalation={"firstBanSeconds": 600})
    result = effective_policy(
        "blue", banlists=[banlist("x", {"peerId": A})], ratelimitpolicies=[a, b], now=NOW
    )
    assert result.content is None
    (problem,) = result.problems
    assert problem.kind is ProblemKind.LIMITS_CONFLICT
    assert problem.objects == ("long-first", "short-max")
    assert "firstBanSeconds must not exceed maxBanSeconds" in problem.message


def test_effective_policy_names_what_selected_the_fleet() -> None:
    result = effective_policy(
        "blue",
        banlists=[banlist("b", fleet="blue"), banlist("a"), banlist("g", fleet="green")],
        ratelimitpolicies=[policy("p"), policy("q", fleet="green")],
        now=NOW,
    )
    assert result.ban_lists == ("a", "b")
    assert result.rate_limit_policies == ("p",)


@given(
    st.permutations([policy(f"p{i}", priority=i % 3, maxPendingQueries=i + 1) for i in range(6)])
)
def test_limit_merge_is_order_independent(policies: list[RateLimitPolicy]) -> None:
    assert (
        merge_limits("blue", policies)[0]
        == merge_limits("blue", sorted(policies, key=lambda p: p.name))[0]
    )


def test_naive_expiry_is_taken_as_utc() -> None:
    naive = (NOW + timedelta(hours=1)).replace(tzinfo=None)
    bl = BanList(
        namespace="ns",
        name="x",
        created=NOW,
        spec=BanListSpec(entries=[BanListEntry(peer_id=A, expires_at=naive)]),
    )
    (ban,) = effective_bans("blue", [bl], NOW)
    assert ban.expires_at == NOW + timedelta(hours=1)


# -- takedowns: content entries travel as blocks, with the bans' rules -----------------------

DIGEST = "ab" * 32
AUTHOR = "mp" + "a" * 52


def test_takedowns_go_to_blocks_and_peers_to_bans_each_with_its_provenance() -> None:
    lists = [
        banlist("abuse", {"peerId": A}, {"digest": DIGEST, "reason": "malware"}),
        banlist("dmca", {"package": "hello-tool@1.0.0"}, {"name": "evil"}, fleet="blue"),
        banlist("spam", {"publisher": AUTHOR, "duration": "2h"}),
        banlist("other-fleet", {"name": "elsewhere"}, fleet="green"),
    ]
    content = effective_policy("blue", banlists=lists, ratelimitpolicies=[], now=NOW).content
    assert content is not None
    assert [b.peer_id for b in content.bans] == [A]
    blocks = {(b.digest or b.package or b.name or b.publisher): b for b in content.blocks}
    assert set(blocks) == {DIGEST, "hello-tool@1.0.0", "evil", AUTHOR}
    assert (blocks[DIGEST].source, blocks[DIGEST].reason) == ("banlist/abuse", "malware")
    assert blocks["evil"].source == "banlist/dmca"
    assert blocks[AUTHOR].expires_at == NOW + timedelta(hours=1)  # created an hour ago, 2h


def test_an_allow_lifts_a_takedown_and_an_expired_one_is_gone() -> None:
    lists = [
        banlist("x", {"name": "evil"}, {"package": "a@1.0.0", "expiresAt": at(seconds=-1)}),
        banlist("y", {"name": "evil", "action": "allow", "reason": "appeal granted"}),
    ]
    content = effective_policy("blue", banlists=lists, ratelimitpolicies=[], now=NOW).content
    assert content is not None
    assert content.blocks == ()


def test_a_policy_without_takedowns_hashes_as_before_and_a_takedown_changes_the_hash() -> None:
    plain = effective_policy("blue", banlists=[banlist("x", {"peerId": A})], ratelimitpolicies=[],
                             now=NOW).content  # fmt: skip
    blocked = effective_policy(
        "blue", banlists=[banlist("x", {"peerId": A}, {"name": "evil"})], ratelimitpolicies=[],
        now=NOW,
    ).content  # fmt: skip
    assert plain is not None
    assert blocked is not None
    assert b"blocks" not in canonical_json(plain)
    assert content_hash(plain) != content_hash(blocked)


def test_per_publisher_limits_merge_by_precedence_and_default_when_unset() -> None:
    strong = policy("a-strong", priority=5, perPublisher={"rate": 0.2, "burst": 3})
    weak = policy("b-weak", perPublisher={"rate": 9, "burst": 9})
    merged, sources, problems = merge_limits("blue", [weak, strong])
    assert problems == ()
    assert merged is not None
    assert (merged.per_publisher.rate, merged.per_publisher.burst) == (0.2, 3)
    assert sources["perPublisher"] == "a-strong"
    unset, _, _ = merge_limits("blue", [policy("c", perPeer={"fetch": {"rate": 1, "burst": 1}})])
    assert unset is not None
    assert unset.per_publisher == RateLimits().per_publisher
