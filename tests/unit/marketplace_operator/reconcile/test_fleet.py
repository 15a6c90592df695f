"""A fleet's announcement is rendered once for all its members, and says what each
member's own rendering said (issue 15: O(N) per pass was O(N^2) per poll round)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from marketplace_operator.context import FleetMemo
from marketplace_operator.reconcile import fleet
from marketplace_operator.reconcile.observe import pod_view
from marketplace_operator.render import configmap
from marketplace_protocol.admin import Members


def member(node: str, ip: str | None, *, phase: str = "Running") -> fleet.MemberPod:
    pod: dict[str, Any] = {"metadata": {"name": f"{node}-pod", "uid": f"u-{node}"}}
    pod["status"] = {"phase": phase, **({"podIP": ip} if ip else {})}
    return fleet.MemberPod(node=node, pod=pod_view(pod), port=7070)


PODS = (
    member("c", "127.1.0.3"),
    member("a", "127.1.0.1"),
    member("d", None),
    member("b", "::1"),
    member("e", "127.1.0.5", phase="Failed"),
)
PEER_IDS = {"a": "mpaaaaaaaaaaaaaaaa", "c": "mpcccccccccccccccc"}


def test_the_announcement_matches_the_members_document() -> None:
    got = fleet.announcement(PODS, PEER_IDS)
    listed = fleet.members(PODS, PEER_IDS)
    assert [m.name for m in got.members] == ["a", "b", "c"]  # sorted; no IP or failed: out
    assert got.text == configmap.members_json(listed)
    assert got.leader == "a"
    for node in ("a", "b", "c", "d", "z"):
        others = [m for m in listed if m.name != node]
        expected = Members(members=others).model_dump_json(by_alias=True).encode()
        assert got.push_body(node) == expected
        assert Members.model_validate_json(got.push_body(node)).members == others
        assert got.others(node) == len(others)


def test_a_change_renders_only_the_members_it_changed() -> None:
    """Issue 15: re-rendering all N members at each change was a tenth of the operator's
    CPU in a 300-node rollout."""
    before = fleet.announcement(PODS, PEER_IDS)
    moved = (member("c", "127.1.0.33"), *PODS[1:])
    after = fleet.announcement(moved, PEER_IDS, previous=before)
    fresh = fleet.announcement(moved, PEER_IDS)
    assert (after.text, after.digest, after.members) == (fresh.text, fresh.digest, fresh.members)
    assert after.push_body("a") == fresh.push_body("a")
    old = {m.name: m for m in before.members}
    for m in after.members:
        assert (m is old[m.name]) is (m.name != "c")  # kept unless changed
    assert {m.name for m in fleet.announcement(PODS[1:], PEER_IDS, previous=after).members} == {
        "a",
        "b",
    }  # a member gone is not kept


def test_the_digest_follows_the_content() -> None:
    one = fleet.announcement(PODS, PEER_IDS)
    assert fleet.announcement(PODS, dict(PEER_IDS)).digest == one.digest
    assert fleet.announcement(PODS, {**PEER_IDS, "b": "mpbbbbbbbbbbbbbbbb"}).digest != one.digest
    assert fleet.announcement(PODS[:-2], PEER_IDS).digest != one.digest


def test_the_memo_recomputes_only_when_its_inputs_change() -> None:
    memo = FleetMemo()
    calls: list[int] = []

    def compute(n: int) -> int:
        calls.append(n)
        return n * 10

    assert memo.get("k", (PODS, PEER_IDS), lambda: compute(1)) == 10
    assert memo.get("k", (PODS, dict(PEER_IDS)), lambda: compute(2)) == 10  # equal inputs
    assert memo.get("other", (PODS, PEER_IDS), lambda: compute(3)) == 30  # per key
    assert memo.get("k", (PODS[:2], PEER_IDS), lambda: compute(4)) == 40
    assert calls == [1, 3, 4]


def test_a_value_checked_within_fresh_for_is_taken_without_a_look_at_the_inputs() -> None:
    """A rolling fleet's inputs differ at nearly every pass; checking them is O(N)."""
    clock = [0.0]
    memo = FleetMemo(clock=lambda: clock[0])
    looked: list[str] = []

    def get(inputs: str, fresh_for: float) -> str:
        def projection() -> str:
            looked.append(inputs)
            return inputs

        return memo.get("k", inputs, inputs.upper, projection, fresh_for=fresh_for)

    assert get("a", 1.0) == "A"
    clock[0] = 0.5
    assert get("b", 1.0) == "A"  # checked 0.5 s ago: taken as it is
    assert get("b", 0.0) == "B"  # exact: looked at, rebuilt
    clock[0] = 1.6
    assert get("c", 1.0) == "C"  # checked 1.1 s ago: looked at again
    assert looked == ["a", "b", "c"]


def test_a_pod_change_that_leaves_the_announcement_alone_does_not_rebuild_it() -> None:
    """A pod turning Ready (a new object in the index) changes no member: the projection
    (`announcement_inputs`) says so, and the announcement is kept; a new address is not."""
    memo = FleetMemo()
    built: list[tuple[fleet.MemberPod, ...]] = []

    def get(pods: tuple[fleet.MemberPod, ...]) -> fleet.Announcement:
        def compute() -> fleet.Announcement:
            built.append(pods)
            return fleet.announcement(pods, PEER_IDS)

        return memo.get(
            "members", (pods, PEER_IDS), compute, lambda: fleet.announcement_inputs(pods, PEER_IDS)
        )

    first = get(PODS)
    ready = replace(PODS[0], pod=replace(PODS[0].pod, ready=True))  # a new object, Ready
    assert get((ready, *PODS[1:])) is first
    a, _no_ip, b, _failed = PODS[1:]
    assert get((ready, a, b)) is first  # d (no IP) and e (failed) were not announced
    moved = get((member("c", "127.1.0.33"), a, b))
    assert [m.address for m in moved.members if m.name == "c"] == ["http://127.1.0.33:7070"]
    assert len(built) == 2  # the first, and the new address


def _service(type_: str, *, node_port: int | None = 31070, ingress: Any = None) -> dict[str, Any]:
    port: dict[str, Any] = {"name": "p2p", "port": 7070}
    if node_port is not None:
        port["nodePort"] = node_port
    body: dict[str, Any] = {"spec": {"type": type_, "ports": [port]}}
    if ingress is not None:
        body["status"] = {"loadBalancer": {"ingress": ingress}}
    return body


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (None, None),
        (_service("ClusterIP", node_port=None), None),
        (_service("NodePort"), fleet.EntryAddress(port=31070)),
        (_service("NodePort", node_port=None), None),  # not allocated yet
        (
            _service("LoadBalancer", ingress=[{"ip": "198.51.100.4"}]),
            fleet.EntryAddress(port=7070, host="198.51.100.4"),
        ),
        (
            _service("LoadBalancer", ingress=[{"hostname": "lb.example.com"}]),
            fleet.EntryAddress(port=7070, host="lb.example.com"),
        ),
        (_service("LoadBalancer", ingress=[]), fleet.EntryAddress(port=31070)),  # pending
        (_service("LoadBalancer", node_port=None), None),  # allocateLoadBalancerNodePorts off
    ],
)
def test_the_entry_service_gives_an_outside_address(
    service: dict[str, Any] | None, expected: fleet.EntryAddress | None
) -> None:
    assert fleet.entry_address(service) == expected


def _on_node(node: str, ip: str, host_ip: str | None) -> fleet.MemberPod:
    pod: dict[str, Any] = {"metadata": {"name": f"{node}-pod", "uid": f"u-{node}"}}
    pod["status"] = {"phase": "Running", "podIP": ip, **({"hostIP": host_ip} if host_ip else {})}
    return fleet.MemberPod(node=node, pod=pod_view(pod), port=7070)


def test_each_member_is_reached_outside_on_its_own_node_or_at_the_balancer() -> None:
    pods = (
        _on_node("a", "10.1.0.5", "192.0.2.1"),
        _on_node("b", "10.1.0.6", "2001:db8::2"),
        _on_node("c", "10.1.0.7", None),  # not scheduled yet: no Node, no outside address
    )
    by_port = {m.name: m.external for m in fleet.members(pods, {}, fleet.EntryAddress(31070))}
    assert by_port == {
        "a": "http://192.0.2.1:31070",
        "b": "http://[2001:db8::2]:31070",
        "c": None,
    }
    balancer = fleet.EntryAddress(port=7070, host="198.51.100.4")
    assert {m.external for m in fleet.members(pods, {}, balancer)} == {"http://198.51.100.4:7070"}
    plain = fleet.announcement(pods, {})
    assert "external" not in plain.text  # ClusterIP: members.json as nodes before the field read
    assert (
        '"external":"http://192.0.2.1:31070"'
        in fleet.announcement(pods, {}, fleet.EntryAddress(31070)).text
    )
