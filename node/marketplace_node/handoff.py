"""The drain hand-off: content only this node holds goes to peers, then peers are told it leaves.

Order matters: while our provider records still point at us, a peer asked to
`replicate` can fetch from us; only then does the signed `peer_leaving`
announcement make peers drop our records (instead of timing out on them).
Runs inside the drain deadline (`drain.DrainCoordinator`).
"""

from __future__ import annotations

import logging

from marketplace_node.errors import NodeError
from marketplace_node.model import AnnouncementKind, ReplicateRequest
from marketplace_node.service import NodeService

logger = logging.getLogger(__name__)


async def leave(service: NodeService) -> int:
    """The whole hand-off; returns how many packages a peer took over."""
    service.hub.close_all()
    handed = await hand_off_content(service)
    await service.announce(AnnouncementKind.PEER_LEAVING)
    await service.settle_pushes()
    return handed


async def hand_off_content(service: NodeService) -> int:
    """Ask peers (round robin) to replicate each package only we provide."""
    sole = [
        pid
        for pid in service.providers.sole(service.identity.peer_id)
        if service.catalogue.get(pid)
    ]
    peers = service.peers.sample(len(service.peers), service.rng)
    if not sole or not peers:
        return 0
    handed = 0
    for i, package_id in enumerate(sole):
        peer = peers[i % len(peers)]
        body = ReplicateRequest(package_id=package_id).model_dump_json(by_alias=True).encode()
        try:
            await service.client.request(
                "POST",
                peer.address,
                "/p2p/v1/replicate",
                body=body,
                within=service.settings.fetch_timeout_seconds,
            )
        except NodeError as exc:
            logger.info("hand-off of %s to %s failed: %s", package_id, peer.peer_id, exc.message)
            continue
        handed += 1
    return handed
