"""Copies of packages: in-sync copies before a publish is acknowledged, and the repairer.

A publish asks the best-ranked peers (`placement.rank`) to fetch and provide
the package (`POST /p2p/v1/replicate`, answered once their copy is verified
and fsynced) until `minInSync` nodes hold it, falling back to the next peer
when one fails; the copies up to the factor follow in the background. Every
`REPAIR_INTERVAL` each node looks at the packages it holds: one whose live
holders (providers that are us or in our peer table) are fewer than the
factor is repaired by its best-ranked live holder, which asks non-holders for
copies. A provider that died drops out of the peer table after its failed
probes; one that lost its disk says so at start (`peer_leaving`), so both
count as lost copies. Content the fleet took down is neither copied nor counted.

During a rollout a copy may run a release from before inline bytes: it refuses a
`replicate` that carries them (`OLD_RELEASE_REFUSAL`), so that copy is asked again in
the old form (it fetches the bytes from us) and, for `INLINE_REFUSED_SECONDS`, asked
only in that form (each refusal counts as invalid data against us there).
"""

from __future__ import annotations

import asyncio
import functools
import logging

from marketplace_protocol.errors import InsufficientReplicas, NodeError

from marketplace_node import limits, placement
from marketplace_node.model import Announcement, PackageMeta, ReplicateRequest
from marketplace_node.peer_client import PeerAnswered
from marketplace_node.service import NodeService

logger = logging.getLogger(__name__)
REPAIR_CONCURRENCY = 16
OLD_RELEASE_REFUSAL = "content: Extra inputs are not permitted"
"""What a node of a release before inline copies (dc916ce) answers a `replicate` carrying
bytes: 400 `invalid_input`, "1 validation error: content: Extra inputs are not permitted"
(its strict model refuses the unknown field; taken from that release's own answer)."""
INLINE_REFUSED_SECONDS = 300.0
"""How long a copy that refused inline bytes is asked only in the old form: a rollout's
length, after which it is tried again (it may have been upgraded meanwhile)."""


def refuses_inline(exc: Exception) -> bool:
    """Is `exc` a copy's refusal of inline bytes by a release that predates them?"""
    return (
        isinstance(exc, PeerAnswered)
        and (exc.details.get("status"), exc.details.get("code")) == ("400", "invalid_input")
        and OLD_RELEASE_REFUSAL in exc.answer
    )


def _inline_refused(service: NodeService, peer_id: str) -> bool:
    since = service.inline_refused.get(peer_id)
    if since is None:
        return False
    if service.clock.monotonic() - since < INLINE_REFUSED_SECONDS:
        return True
    del service.inline_refused[peer_id]
    return False


async def copy_to(
    service: NodeService,
    package_id: str,
    candidates: list[str],
    need: int,
    announcement: Announcement | None = None,
) -> int:
    """Ask `candidates` (best first) for copies until `need` answered; returns how many did.
    At most `need` requests are in flight; a failure moves on to the next candidate. A
    small package's bytes go with the request (`limits.INLINE_CONTENT_MAX`); for a larger
    one each asked peer is invited (`NodeService.inviting`): its fetch of the bytes from us
    is a copy, charged to its copy budget like the `replicate` itself, never to its `fetch`
    limit."""
    meta = announcement.package if announcement is not None else None
    meta = meta or service.catalogue.get(package_id)
    if need <= 0 or meta is None:
        return 0
    content = (
        service.blobs.read_small(meta.digest, limits.INLINE_CONTENT_MAX)
        if meta.size <= limits.INLINE_CONTENT_MAX
        else None
    )

    @functools.cache
    def body(form: str) -> bytes:
        """The request in `form`, serialised once and only if asked for: the old form (no
        bytes, the copy fetches them from us) is needed only by an earlier release."""
        inline = content if form == "inline" else None
        request = ReplicateRequest(package_id=package_id, announcement=announcement, content=inline)
        return request.model_dump_json(by_alias=True, exclude_none=True).encode()

    queue = list(candidates)
    acks = 0

    async def ask(address: str, form: str) -> None:
        await service.client.request(
            "POST",
            address,
            "/p2p/v1/replicate",
            body=body(form),
            within=service.settings.fetch_timeout_seconds,
        )

    async def one(peer_id: str) -> bool:
        peer = service.peers.get(peer_id)
        if peer is None:
            return False
        form = "old" if _inline_refused(service, peer_id) else "inline"
        try:
            with service.inviting(peer_id, meta.digest):
                try:
                    await ask(peer.address, form)
                except PeerAnswered as exc:
                    if content is None or not refuses_inline(exc):
                        raise
                    service.inline_refused[peer_id] = service.clock.monotonic()
                    logger.info("%s runs an earlier release: copies go in the old form", peer_id)
                    await ask(peer.address, "old")
        except NodeError as exc:
            logger.info("copy of %s to %s failed: %s", package_id, peer_id, exc.message)
            return False
        service.note_holder(package_id, peer_id, peer.address)
        return True

    pending: set[asyncio.Task[bool]] = set()
    while acks < need and (queue or pending):
        while queue and len(pending) < need - acks:
            pending.add(asyncio.ensure_future(one(queue.pop(0))))
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        acks += sum(1 for task in done if task.result())
    for task in pending:  # more answered than needed is fine; do not wait for them
        task.cancel()
    return acks


async def repair_once(service: NodeService) -> int:
    """One pass over what we hold; returns how many packages lack copies (the gauge)."""
    me = service.identity.peer_id
    replication = service.replication()
    live = service.peers.alive()
    under, repairs = 0, []
    for package_id in service.catalogue.ids():
        meta = service.catalogue.get(package_id)
        if meta is None or service.blocked(meta) is not None:
            continue  # taken down: never copied, so never counted as lacking copies
        holders = service.live_holders(package_id)
        if len(holders) < replication.factor:
            under += 1
        if me not in holders:
            continue
        plan = placement.plan_repair(
            package_id, me=me, holders=holders, live_peers=live, factor=replication.factor
        )
        if plan is not None:
            repairs.append(plan)
    service.metrics.under_replicated.set(under)
    service.under_replicated = under
    # The packages' own announcements go with the copies: a peer that has not heard of a
    # package yet (a node back on an empty disk, still catching up) learns it from them.
    announcements = await service.store.announcements_of([plan.package_id for plan in repairs])
    slots = asyncio.Semaphore(REPAIR_CONCURRENCY)

    async def repair(plan: placement.Repair) -> int:
        async with slots:
            return await copy_to(
                service,
                plan.package_id,
                list(plan.targets),
                plan.missing,
                announcements.get(plan.package_id),
            )

    copied = sum(await asyncio.gather(*(repair(plan) for plan in repairs)))
    if copied:
        service.metrics.repaired.inc(copied)
        logger.info("repair: %d copies made, %d packages lacked copies", copied, under)
    return under


async def run(service: NodeService) -> None:
    while True:
        await asyncio.sleep(service.settings.repair_interval_seconds)
        try:
            await repair_once(service)
        except Exception:  # one failed pass must not end the repairer
            logger.exception("repair pass failed")


async def acknowledge(
    service: NodeService, meta: PackageMeta, announcement: Announcement | None
) -> None:
    """Commit our announcement of a publish (`NodeService.prepare_publish`; None: an
    identical retry) while `minInSync` nodes (we are one: the bytes were uploaded) take
    copies, and return once both are done; then push it to the fleet, and make the copies
    up to the factor in the background. `InsufficientReplicas` if too few answered."""
    replication = service.replication()
    holders = service.live_holders(meta.id) | {service.identity.peer_id}
    candidates = placement.rank(meta.id, service.peers.alive() - holders)
    need = replication.min_in_sync - len(holders)
    copies = copy_to(service, meta.id, candidates, need, announcement)
    if announcement is None:
        acks = await copies
    else:
        copying = asyncio.ensure_future(copies)
        try:
            await service.originate(announcement, push=False)
        except BaseException:
            copying.cancel()
            raise  # not stored here: not ours to push
        try:
            acks = await copying
        finally:
            # Pushed once the in-sync copies answered (or failed): while the client waits,
            # the copies have the CPU and the peers' disks to themselves.
            service.forward(announcement, sender=None)
    if acks < need:
        raise InsufficientReplicas(
            f"{len(holders) + acks} of {replication.min_in_sync} in-sync copies; retry",
            details={"package": meta.id},
        )
    held = service.live_holders(meta.id)
    rest = replication.factor - len(held)
    if rest > 0:
        left = [p for p in candidates if p not in held]
        service.spawn(copy_to(service, meta.id, left, rest, announcement))
