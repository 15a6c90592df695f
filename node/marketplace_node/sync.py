"""Anti-entropy: pull the change log of a peer from our last cursor, page by page.

Each page's announcements are verified exactly like gossip (origin and
publisher signatures) and applied in order, without forwarding. The cursor
per peer is persisted, so a restarted node asks only for what it missed; if
the peer's log is shorter than our cursor (it lost its data) we restart from 0.
A page containing a forgery marks the peer as misbehaving: it should have
verified before storing.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence

from marketplace_protocol.errors import Conflict, NodeError, NotFound, StorageFull, Unauthenticated

from marketplace_node import limits
from marketplace_node.model import Announcement, Change, ChangePage
from marketplace_node.peers import Peer
from marketplace_node.policy.escalation import Offence
from marketplace_node.service import NodeService

logger = logging.getLogger(__name__)
MAX_PAGES_PER_PULL = 1_000
APPLY_TOGETHER = 64  # announcements of a page accepted at once (`independent_runs`)


async def serve(service: NodeService, after: int, limit: int) -> ChangePage:
    """One page of our change log after `after`. `more` means "the page was full": the log
    has gaps (compaction), so comparing with the newest seq could promise rows that are gone."""
    page_size = min(limit, limits.SYNC_PAGE_MAX)
    rows = await service.store.changes_after(after, page_size)
    changes = tuple(
        Change(seq=seq, announcement=Announcement.model_validate_json(body)) for seq, body in rows
    )
    last = changes[-1].seq if changes else after
    return ChangePage(
        changes=changes, last_seq=last, head=service.last_seq, more=len(changes) == page_size
    )


async def pull(service: NodeService, peer_id: str, address: str) -> int:
    """Catch up from one peer; returns how many new announcements were applied."""
    key = f"cursor:{peer_id}"
    cursor = int(await service.store.get_kv(key) or 0)
    applied = 0
    for _ in range(MAX_PAGES_PER_PULL):
        try:
            raw = await service.client.request(
                "GET",
                address,
                "/p2p/v1/changes",
                params={"after": str(cursor), "limit": str(limits.SYNC_PAGE_MAX)},
            )
            page = ChangePage.model_validate_json(raw)
        except (NodeError, ValueError) as exc:
            logger.info("sync from %s failed: %s", peer_id, exc)
            return applied
        if page.head < cursor:
            cursor = 0  # the peer lost its log: start over (dedup makes this safe)
            continue
        for run in independent_runs([c.announcement for c in page.changes], APPLY_TOGETHER):
            outcomes = await asyncio.gather(
                *(service.accept(ann, sender=peer_id, forward=False) for ann in run),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, Unauthenticated):
                    service.enforcer.record(peer_id, "", Offence.INVALID_DATA)
                elif isinstance(outcome, Conflict | NotFound):
                    pass  # refused by the names rule (counted): a lost race or a hijack attempt
                elif isinstance(outcome, BaseException):
                    raise outcome
                elif outcome:
                    applied += 1
        cursor = page.last_seq
        await service.store.set_kv(key, str(cursor))
        if not page.more:
            break
    if applied:
        logger.info("caught up %d announcements from %s", applied, peer_id)
    return applied


def independent_runs(anns: Sequence[Announcement], size: int) -> list[list[Announcement]]:
    """`anns` cut, in order, into runs of at most `size` in which no two entries (packages,
    owner records) concern the same name. A run is accepted at once (its commits share one
    fsync, `Store.apply`; a page used to cost 500 of them); the names rule judges an entry
    against what came before it of the same name only, so within a run order cannot matter,
    and between runs it is kept."""
    runs: list[list[Announcement]] = []
    names: set[str] = set()
    for ann in anns:
        entry = ann.package or ann.record
        name = None if entry is None else entry.name
        if not runs or len(runs[-1]) >= size or (name is not None and name in names):
            runs.append([])
            names = set()
        runs[-1].append(ann)
        if name is not None:
            names.add(name)
    return runs


def next_pull_delay(interval: float, rng: random.Random) -> float:
    """Seconds to the next pull: uniform in [interval/2, 3*interval/2), so nodes started
    together drift apart instead of pulling in step."""
    return interval * (0.5 + rng.random())


def pull_peer(peers: Sequence[Peer], rng: random.Random) -> Peer | None:
    """The peer to pull from: one of the table at random (None: no peer known)."""
    return rng.choice(peers) if peers else None


async def run(service: NodeService) -> None:
    """Every `sync_interval` (jittered), pull from one random peer (repairs lost pushes)."""
    while True:
        await asyncio.sleep(next_pull_delay(service.settings.sync_interval_seconds, service.rng))
        peer = pull_peer(service.peers.all(), service.rng)
        if peer is None:
            continue
        try:
            await pull(service, peer.peer_id, peer.address)
        except StorageFull as exc:  # our disk: the cursor stays, the next pull resumes
            logger.warning("sync from %s paused: %s", peer.peer_id, exc.message)
        except Exception:  # one failed pull must not end anti-entropy (it would, silently)
            logger.exception("sync from %s failed", peer.peer_id)
