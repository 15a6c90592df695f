"""Where copies go and who repairs (pure): every node must reach the same answer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from marketplace_node import placement
from marketplace_node.placement import Replication

PEERS = [f"mp{c * 52}" for c in "abcdefg"]


def test_factor_is_capped_at_the_fleet_and_min_in_sync_at_the_factor() -> None:
    assert Replication(3, 2).capped(5) == Replication(3, 2)
    assert Replication(3, 2).capped(2) == Replication(2, 2)
    assert Replication(3, 3).capped(1) == Replication(1, 1)
    assert Replication(2, 5).capped(9) == Replication(2, 2)


@given(st.permutations(PEERS), st.text(min_size=1, max_size=8))
def test_the_rank_does_not_depend_on_the_order_peers_are_listed_in(
    peers: list[str], package_id: str
) -> None:
    assert placement.rank(package_id, peers) == placement.rank(package_id, sorted(peers))


@given(
    st.sets(st.sampled_from(PEERS), min_size=1),
    st.sets(st.sampled_from(PEERS)),
    st.integers(1, 5),
)
def test_exactly_one_holder_repairs_and_asks_only_live_non_holders(
    holders: set[str], live: set[str], factor: int
) -> None:
    plans = {
        me: placement.plan_repair(
            "pkg", me=me, holders=holders, live_peers=live | holders, factor=factor
        )
        for me in holders
    }
    planned = {me: plan for me, plan in plans.items() if plan is not None}
    spare = (live | holders) - holders
    if len(holders) >= factor or not spare:
        assert planned == {}
        return
    [(repairer, plan)] = planned.items()
    assert repairer == placement.rank("pkg", holders)[0]
    assert plan.missing == factor - len(holders)
    assert set(plan.targets) == spare
    assert list(plan.targets) == placement.rank("pkg", spare)
