"""`reading.Everywhere` polls five nodes at the default client limits without being refused,
while one of them is still catching up (the lost-disk integration test's flake)."""

from __future__ import annotations

from marketplace_node.policy.enforcer import PolicyEnforcer
from marketplace_protocol.admin import Operation
from marketplace_protocol.clock import FakeClock
from marketplace_protocol.errors import NodeError

from tests.support.reading import Everywhere, Read

NODES = range(5)
PACKAGES = [f"p{i:02d}" * 8 for i in range(12)]
REQUEST = 0.005  # seconds a local read takes on a quiet machine
ROUND_PAUSE = 0.2  # `wait_for`'s interval
REBORN = 0


def fleet(clock: FakeClock, catching_up: float) -> tuple[dict[int, list[int]], Read]:
    """Five node doors at the default limits; node `REBORN` answers 404 for `catching_up`
    seconds (its catalogue comes back by anti-entropy). Returns (statuses seen per node,
    the read function)."""
    doors = {n: PolicyEnforcer(clock, node_id=f"node-{n:012d}") for n in NODES}
    seen: dict[int, list[int]] = {n: [] for n in NODES}
    back_at = clock.monotonic() + catching_up

    def read(node: int, package: str) -> tuple[int, bytes]:
        clock.advance(REQUEST)
        try:
            doors[node].admit(None, "127.0.0.1", Operation.FETCH)
        except NodeError as exc:
            status = exc.http_status
        else:
            status = 404 if node == REBORN and clock.monotonic() < back_at else 200
        seen[node].append(status)
        return status, b""

    return seen, read


def test_a_slow_catch_up_is_waited_for_without_a_refusal() -> None:
    clock = FakeClock()
    seen, read = fleet(clock, catching_up=20.0)
    everywhere = Everywhere(read, list(NODES), PACKAGES)
    deadline = clock.monotonic() + 60
    while not everywhere() and clock.monotonic() < deadline:
        clock.advance(ROUND_PAUSE)
    assert everywhere.left() == 0, everywhere.missing
    assert {status for statuses in seen.values() for status in statuses} == {200, 404}
    assert seen[REBORN].count(200) == len(PACKAGES)  # each package read once it served


def test_missing_names_the_first_refusal_of_each_node_still_short() -> None:
    clock = FakeClock()
    _, read = fleet(clock, catching_up=5.0)
    everywhere = Everywhere(read, list(NODES), PACKAGES)
    assert not everywhere()
    assert everywhere.missing == [(REBORN, PACKAGES[0][:12], 404, b"")]
    assert everywhere.left() == len(PACKAGES)  # the other nodes served all theirs
