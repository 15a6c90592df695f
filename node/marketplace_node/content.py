"""Fetching a package's content from the best provider, verified, with fallback.

Providers are tried best reputation first (`reputation.fallback_order`), the
peer that asked us for a copy before them. Each transfer is streamed into the
blob store, which hashes it off the event loop and only keeps it if the
SHA-256 matches the digest in the publisher-signed metadata (verified once,
when it entered the catalogue), so content is never trusted on a peer's word.
A failure, a timeout or a mismatch lowers the provider's reputation and moves
on to the next provider; success raises it and records the latency. When no
provider delivers, the answer says why: every provider tried served bytes
that contradict the signed digest (`IntegrityError`, 502 `integrity_failed`,
naming them; not retryable), or some failed otherwise (`UpstreamFailed`,
retryable, naming any that served bad bytes as `integrityFailed`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from marketplace_protocol.clock import Clock, elapsed
from marketplace_protocol.errors import (
    IntegrityError,
    NodeError,
    PayloadTooLarge,
    StorageFull,
    UpstreamFailed,
)

from marketplace_node.blobs import BlobStore
from marketplace_node.model import PackageMeta
from marketplace_node.peer_client import PeerClient
from marketplace_node.reputation import ReputationBook, fallback_order

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Provider:
    peer_id: str
    address: str


@dataclass(frozen=True, slots=True)
class Attempt:
    peer_id: str
    outcome: str  # "ok", "integrity", "failed"


async def fetch_verified(
    meta: PackageMeta,
    providers: Sequence[Provider],
    *,
    client: PeerClient,
    blobs: BlobStore,
    book: ReputationBook,
    clock: Clock,
    transfer_seconds: float,
    on_attempt: Callable[[Attempt], None] = lambda _: None,
    first: str | None = None,
) -> Provider:
    """Store `meta`'s content locally from the first provider that delivers it intact:
    `first` if it is one (the peer that asked us for a copy), then best reputation first.
    `meta` is the catalogue's, verified when it entered: the bytes are checked against its
    digest. Our own full disk (`StorageFull`) ends the attempt at once: no provider is to
    blame, and none would fare better."""
    blobs.volume.admit(meta.size)
    by_id = {p.peer_id: p for p in providers}
    tampered: list[str] = []
    order = fallback_order((p.peer_id, book.score(p.peer_id)) for p in providers)
    if first in by_id:
        order = [first, *(peer_id for peer_id in order if peer_id != first)]
    for peer_id in order:
        provider = by_id[peer_id]
        started = clock.monotonic()
        try:
            async with client.stream(
                provider.address,
                f"/p2p/v1/content/{meta.digest}",
                transfer_seconds=transfer_seconds,
            ) as chunks:
                size = await blobs.write(chunks, digest=meta.digest, max_size=meta.size)
            if size != meta.size:  # unreachable with a matching digest; kept as a guard
                raise IntegrityError("content size differs from the signed size")
        except StorageFull:
            raise
        except (IntegrityError, PayloadTooLarge):
            book.failure(peer_id)
            tampered.append(peer_id)
            on_attempt(Attempt(peer_id, "integrity"))
            logger.warning("provider %s served content that fails verification", peer_id)
            continue
        except NodeError as exc:
            book.failure(peer_id)
            on_attempt(Attempt(peer_id, "failed"))
            logger.info("provider %s failed: %s", peer_id, exc.message)
            continue
        book.success(peer_id, elapsed(clock.monotonic(), started))
        on_attempt(Attempt(peer_id, "ok"))
        return provider
    details = {"package": meta.id}
    if tampered and len(tampered) == len(by_id):
        raise IntegrityError(
            "every provider served content that contradicts the signed digest",
            details=details | {"providers": ",".join(tampered)},
        )
    if tampered:
        details["integrityFailed"] = ",".join(tampered)
    raise UpstreamFailed("no provider delivered the content", details=details)
