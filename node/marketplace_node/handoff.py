"""The drain hand-off: content only this node holds goes to peers, then peers are told it leaves.

Order matters: while our provider records still point at us, a peer asked to
`replicate` can fetch from us; only then does the signed `peer_leaving`
announcement make peers drop our records (instead of timing out on them).
Runs inside the drain deadline (`drain.DrainCoordinator`).
"""

from __future__ import annotations

from marketplace_node import replication
from marketplace_node.model import AnnouncementKind
from marketplace_node.service import NodeService


async def leave(service: NodeService) -> int:
    """The whole hand-off; returns how many packages a peer took over."""
    service.hub.close_all()
    handed = await hand_off_content(service)
    await service.announce(AnnouncementKind.PEER_LEAVING)
    await service.settle_pushes()
    return handed


async def hand_off_content(service: NodeService) -> int:
    """Ask peers (round robin, the others as fallbacks) for a copy of each package only we
    provide."""
    sole = [
        pid
        for pid in service.providers.sole(service.identity.peer_id)
        if service.catalogue.get(pid)
    ]
    everyone = service.peers.sample(len(service.peers), service.rng)
    peers = [p for p in everyone if not p.foreign]  # another fleet does not keep our copies
    if not sole or not peers:
        return 0
    handed = 0
    for i, package_id in enumerate(sole):  # round robin, then the others as fallbacks
        order = [p.peer_id for p in peers[i % len(peers) :] + peers[: i % len(peers)]]
        handed += await replication.copy_to(service, package_id, order, need=1)
    return handed
