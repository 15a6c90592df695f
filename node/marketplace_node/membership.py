"""Peer membership I/O: hello (peer exchange + liveness), joining, stale-peer cleanup.

Every `liveness_interval` the node says hello to every configured
(bootstrap/member) address not yet in the table, to a few addresses learned
by peer exchange, and to the `PROBES_PER_ROUND` known peers silent the
longest (any verified request from a peer also counts as a sign of life), so
the liveness cost per round is bounded whatever the table size. A successful
hello records the peer (and
the peers it knows as candidates); a failed one counts against it, and peers
that keep failing past `stale_after` are removed. A newly joined peer
triggers an anti-entropy pull from it, so a (re)started node catches up
within one round. A node that greets no one (none configured: the first node
of a fleet run by hand, or one reborn on an empty disk that no peer lists)
meets its peers only when they greet it: it catches up from the first that
does, instead of at its first anti-entropy round (up to 1.5 sync intervals,
while it answered 404 for every package it was not sent a copy of).

Joining is on the path to readiness (a node with configured peers is ready
only once one answered), so a node without peers retries sooner, backing off
from `JOIN_RETRY_FIRST_SECONDS` to the liveness interval, and a change of its
configured peers (the operator's members push) starts a round at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cachetools import LRUCache
from marketplace_protocol.errors import Forbidden, NodeError

from marketplace_node import sync
from marketplace_node.model import Hello, HelloReply
from marketplace_node.peers import Peer
from marketplace_node.policy import peering
from marketplace_node.service import NodeService

logger = logging.getLogger(__name__)
CANDIDATES_MAX = 256
CANDIDATES_PER_ROUND = 8
PROBES_PER_ROUND = 8
JOIN_RETRY_FIRST_SECONDS = 0.25


def join_retry_delay(previous: float | None, interval: float) -> float:
    """Seconds to the next round of a node not yet joined: doubling from
    `JOIN_RETRY_FIRST_SECONDS` (`previous` None: the first retry), capped by `interval`."""
    if previous is None:
        return min(JOIN_RETRY_FIRST_SECONDS, interval)
    return min(previous * 2, interval)


class Membership:
    def __init__(self, service: NodeService) -> None:
        self.service = service
        self.candidates: LRUCache[str, None] = LRUCache(maxsize=CANDIDATES_MAX)
        self._nudged = asyncio.Event()
        self._pulled = False  # a pull from a newly met peer has started (`_catch_up`)

    def nudge(self) -> None:
        """Run a round now (e.g. new configured peers) instead of at the next interval."""
        self._nudged.set()

    def reply(self, sender: str, hello: Hello, ip: str) -> HelloReply:
        """Answer a peer's hello (from connection address `ip`): record it, and share a
        sample of the peers we know.

        Fleets do not mix unless the fleet's peering rule allows it: a hello naming another
        fleet is refused (403) unless `ip` is in the fleet's allowed peer networks, so a
        misconfigured bootstrap list cannot merge two fleets' catalogues."""
        svc = self.service
        foreign = hello.fleet != svc.settings.fleet
        if foreign and not peering.foreign_allowed(svc.enforcer.policy.peering, ip):
            raise Forbidden("peer belongs to another fleet", details={"fleet": hello.fleet})
        is_new = sender not in svc.peers
        if (
            svc.peers.seen(
                sender,
                hello.address,
                svc.clock.monotonic(),
                pinned=hello.address in svc.configured_peers,
                wall=svc.clock.wall(),
                foreign=foreign,
            )
            and is_new
            and not self._pulled
        ):
            self._catch_up(sender, hello.address)
        known = svc.peers.sample(32, svc.rng, exclude={sender})
        # Beyond the fleet, our members are named by their outside addresses where known.
        shown = svc.externals if foreign else {}
        return HelloReply(
            peer_id=svc.identity.peer_id,
            address=svc.advertised(abroad=foreign),
            fleet=svc.settings.fleet,
            peers=tuple((p.peer_id, shown.get(p.address, p.address)) for p in known),
        )

    async def hello(self, address: str) -> str | None:
        """Say hello to `address`; the peer id that answered, None on failure."""
        svc = self.service
        # Not a member, bootstrap or known peer of our fleet: tell it our outside address.
        own = {p.address for p in svc.peers.all() if not p.foreign}
        abroad = address not in svc.configured_peers and address not in own
        hello = Hello(address=svc.advertised(abroad=abroad), fleet=svc.settings.fleet)
        body = hello.model_dump_json(by_alias=True)
        try:
            raw = await svc.client.request("POST", address, "/p2p/v1/hello", body=body.encode())
            reply = HelloReply.model_validate_json(raw)
        except (NodeError, ValueError) as exc:
            logger.debug("hello to %s failed: %s", address, exc)
            return None
        if reply.peer_id == svc.identity.peer_id:
            return None
        foreign = reply.fleet not in ("", svc.settings.fleet)  # "": a peer too old to say
        if foreign and not self._may_peer_abroad(address):
            return None
        if svc.enforcer.banned(reply.peer_id, str(peering.host_address(address) or "")):
            return None  # a ban wins: we do not keep a banned node as a peer either
        is_new = reply.peer_id not in svc.peers
        if svc.peers.seen(
            reply.peer_id,
            address,
            svc.clock.monotonic(),
            pinned=address in svc.configured_peers,
            wall=svc.clock.wall(),
            foreign=foreign,
        ):
            for peer_id, peer_address in reply.peers:
                if peer_id != svc.identity.peer_id and peer_id not in svc.peers:
                    self.candidates[peer_address] = None
            if is_new:
                self._catch_up(reply.peer_id, address)
        return reply.peer_id

    def _catch_up(self, peer_id: str, address: str) -> None:
        """Pull from a peer we just met: each one we greet, and the first that greets us
        if we have met none yet (module docstring)."""
        self._pulled = True
        self.service.spawn(sync.pull(self.service, peer_id, address))

    def _may_peer_abroad(self, address: str) -> bool:
        rule = self.service.enforcer.policy.peering
        return rule is not None and rule.allows_url(address)

    def _keep(self, peer: Peer) -> bool:
        """Whether a known peer stays: not banned, and (of another fleet) still allowed."""
        svc = self.service
        if svc.enforcer.banned(peer.peer_id, str(peering.host_address(peer.address) or "")):
            return False
        return not peer.foreign or self._may_peer_abroad(peer.address)

    async def round(self) -> None:
        svc = self.service
        if svc.draining:
            return  # a hello after our `peer_leaving` would make peers add us back
        for peer_id in svc.peers.prune(self._keep):
            logger.info("dropped peer %s (banned, or outside the allowed networks)", peer_id)
        known = {p.address: p.peer_id for p in svc.peers.all()}
        now = svc.clock.monotonic()
        quiet = svc.peers.least_recently_seen(
            PROBES_PER_ROUND, before=now - svc.settings.liveness_interval_seconds
        )
        configured = (*svc.configured_peers, *svc.seeds)
        targets = [p.address for p in quiet] + [a for a in configured if a not in known]
        targets += [a for a in list(self.candidates)[:CANDIDATES_PER_ROUND] if a not in known]
        targets = [a for a in dict.fromkeys(targets) if a != svc.settings.public_url]
        answers = await asyncio.gather(*(self.hello(a) for a in targets))
        for address, answered in zip(targets, answers, strict=True):
            self.candidates.pop(address, None)
            if answered is None and address in known:
                svc.peers.failed(known[address])
        for peer_id in svc.peers.stale(svc.clock.monotonic()):
            svc.peers.remove(peer_id)
            logger.info("removed stale peer %s", peer_id)

    async def run(self) -> None:
        retry: float | None = None  # the back-off while no configured peer has answered
        while True:
            self._nudged.clear()
            try:
                await self.round()
            except Exception:
                logger.exception("membership round failed")
            svc = self.service
            interval = svc.settings.liveness_interval_seconds
            retry = None if svc.joined() else join_retry_delay(retry, interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), interval if retry is None else retry)
