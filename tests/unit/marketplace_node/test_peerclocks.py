"""Whose clock is off: this node's, when most peers heard lately say so (`peerclocks`);
a stale but genuine peer request is told apart from a forgery (`signing`)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from marketplace_node import signing
from marketplace_node.config import NodeSettings
from marketplace_node.peerclocks import FRESH_SECONDS, PeerClocks
from marketplace_protocol import identity
from marketplace_protocol.clock import FakeClock, SystemClock
from marketplace_protocol.errors import BadSignature, StaleRequest
from pydantic import SecretStr

from tests.support.node_server import serving
from tests.support.signed import package

NOW = 1_700_000_000.0


def test_one_peer_apart_is_that_peers_problem() -> None:
    clocks = PeerClocks(FakeClock(wall=NOW))
    clocks.note("a", int(NOW), now_wall=NOW)
    clocks.note("b", int(NOW) + 600, now_wall=NOW)  # b's clock jumped
    assert clocks.offset() == 0.0
    assert not clocks.skewed()


def test_most_peers_apart_the_same_way_means_our_clock_is_off() -> None:
    clocks = PeerClocks(FakeClock(wall=NOW))
    for peer in ("a", "b"):
        clocks.note(peer, int(NOW) - 600, now_wall=NOW)  # we are 600 s ahead
    assert clocks.offset() == 600.0
    clocks.note("c", int(NOW) + 600, now_wall=NOW)  # 2 of 3 still place us ahead
    assert clocks.offset() == 600.0
    clocks.note("d", int(NOW) + 600, now_wall=NOW)  # a tie: no verdict
    assert clocks.offset() == 0.0


def test_small_differences_and_a_single_peer_give_no_verdict() -> None:
    clocks = PeerClocks(FakeClock(wall=NOW))
    clocks.note("a", int(NOW) - 600, now_wall=NOW)
    assert clocks.offset() == 0.0  # one peer: either clock may be wrong
    clocks.note("b", int(NOW) - 5, now_wall=NOW)
    assert clocks.offset() == 0.0  # within transit and resolution


def test_readings_age_out_and_a_corrected_clock_clears() -> None:
    clock = FakeClock(wall=NOW)
    clocks = PeerClocks(clock)
    for peer in ("a", "b"):
        clocks.note(peer, int(NOW) + 900, now_wall=NOW)
    assert clocks.offset() == -900.0  # we are behind
    clock.advance(FRESH_SECONDS + 1)
    assert clocks.offset() == 0.0
    for peer in ("a", "b"):  # the clock stepped back into line
        clocks.note(peer, int(clock.wall()), now_wall=clock.wall())
    assert not clocks.skewed()


def test_the_table_is_bounded() -> None:
    clocks = PeerClocks(FakeClock(wall=NOW), max_peers=3)
    for i in range(10):
        clocks.note(f"p{i}", int(NOW) - 600, now_wall=NOW)
    assert len(clocks._seen) == 3


def test_a_genuine_stale_request_is_noted_then_refused_a_forged_one_is_not_noted() -> None:
    peer = identity.Identity.generate()
    clocks = PeerClocks(FakeClock(wall=NOW))
    replay = signing.ReplayCache(FakeClock(wall=NOW))
    created = int(NOW) - 900
    headers = signing.sign_request(
        peer, method="POST", path="/p2p/v1/announce", query="", body=b"{}", created=created
    )

    def verify(h: dict[str, str], body: bytes = b"{}") -> str:
        return signing.verify_request(
            method="POST", path="/p2p/v1/announce", query="", headers=h, body=body,
            now_wall=NOW, replay=replay, clocks=clocks,
        )  # fmt: skip

    with pytest.raises(BadSignature):
        verify(headers, body=b'{"x": 1}')  # tampered: refused before anything is noted
    assert clocks._seen == {}
    with pytest.raises(StaleRequest):
        verify(headers)
    assert clocks._seen[peer.peer_id][0] == -900


async def test_a_node_whose_peers_all_place_it_off_says_so_and_blames_nobody(
    tmp_path: Path,
) -> None:
    settings = NodeSettings(data_dir=tmp_path, port=0, admin_token=SecretStr("s3cret"))
    async with serving(settings) as (public, service, private):
        behind = int(SystemClock().wall()) - 900  # every peer's clock, as we read it
        peers = [identity.Identity.generate() for _ in range(2)]
        admin = {"Authorization": "Bearer s3cret"}
        body = b"{}"
        async with aiohttp.ClientSession() as http:

            async def hello(peer: identity.Identity) -> aiohttp.ClientResponse:
                headers = signing.sign_request(
                    peer, method="POST", path="/p2p/v1/announce", query="", body=body,
                    created=behind,
                )  # fmt: skip
                return await http.post(
                    public.make_url("/p2p/v1/announce"), data=body,
                    headers=headers | {"Content-Type": "application/json"},
                )  # fmt: skip

            first = await hello(peers[0])  # one peer apart: its clock, its problem
            assert (first.status, (await first.json())["code"]) == (401, "stale_request")
            second = await hello(peers[1])  # the second: it is our clock
            assert (second.status, (await second.json())["code"]) == (503, "clock_skewed")
            status = await (
                await http.get(private.make_url("/admin/v1/status"), headers=admin)
            ).json()
            assert 895 <= status["clockOffsetSeconds"] <= 905
            metrics = await (await http.get(private.make_url("/metrics"))).text()
            assert "marketplace_node_stale_requests_total 2.0" in metrics
            # a client publish dated by the peers' clock is not judged against ours
            meta = package("skew", created=int(SystemClock().wall()) - 900)
            refused = await http.post(
                public.make_url("/api/v1/packages"), data=meta.model_dump_json(by_alias=True)
            )
            assert (refused.status, (await refused.json())["code"]) == (503, "clock_skewed")
    assert not service.enforcer.active_bans_by_reason()  # genuine peers are no offenders
