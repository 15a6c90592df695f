"""One error tree for the node, with stable codes and HTTP statuses.

Every error a client or peer can see is a `NodeError` subclass; the HTTP layer
turns it into `ErrorBody` with the class's `code`, so callers branch on codes,
never on message text. Classes mix in stdlib types where a caller may catch
those (`TimeoutError`, `ValueError`). Messages never contain secrets.
"""

from __future__ import annotations

from typing import ClassVar


class NodeError(Exception):
    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, details: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidInput(NodeError, ValueError):
    code = "invalid_input"
    http_status = 400


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"
    http_status = 413


class RequestLineTooLong(InvalidInput):
    """The request line (method, path and query) is longer than the node reads."""

    code = "request_line_too_long"
    http_status = 414


class HeaderTooLarge(InvalidInput):
    """One header field (name and value) is longer than the node reads."""

    code = "header_too_large"
    http_status = 431


class UnsupportedMediaType(InvalidInput):
    code = "unsupported_media_type"
    http_status = 415


class Unauthenticated(NodeError):
    code = "unauthenticated"
    http_status = 401


class BadSignature(Unauthenticated):
    code = "bad_signature"


class StaleRequest(Unauthenticated):
    code = "stale_request"


class ReplayedRequest(Unauthenticated):
    code = "replayed_request"


class Forbidden(NodeError):
    code = "forbidden"
    http_status = 403


class PeerBanned(Forbidden):
    code = "peer_banned"


class PeerNotAllowed(Forbidden):
    """A peer from outside the fleet whose address is not in the fleet's allowed peer
    networks (MarketplaceFleet `spec.peering.allowedNetworks`)."""

    code = "peer_not_allowed"


class NotFound(NodeError):
    code = "not_found"
    http_status = 404


class Blocked(NodeError):
    """The fleet took this content down (a takedown in its policy): not served, copied or
    published here. `details` carry the block's source and reason (its provenance)."""

    code = "blocked"
    http_status = 451  # Unavailable For Legal Reasons (RFC 7725)


class Conflict(NodeError):
    code = "conflict"
    http_status = 409


class StalePolicy(Conflict):
    code = "stale_policy"


class NameTaken(Conflict):
    """A package or record whose signer does not own the name (see `names.resolve`)."""

    code = "name_taken"


class VersionExists(Conflict):
    """Other bytes for a `name@version` that is already held: versions never change."""

    code = "version_exists"


class LastOwner(Conflict):
    code = "last_owner"


class NoSuchVersion(NotFound):
    code = "no_such_version"


class AuthorSignatureRequired(InvalidInput):
    """A client publish must carry its author's signature (`marketplace-node key new`)."""

    code = "author_signature_required"


class StaleRecord(InvalidInput):
    """A package or record whose `created` lies outside now ± the clock-skew window."""

    code = "stale_record"


class RateLimited(NodeError):
    code = "rate_limited"
    http_status = 429
    retryable = True

    def __init__(self, message: str, *, retry_after: float, details: dict[str, str] | None = None):
        super().__init__(message, details=details)
        self.retry_after = max(0.0, retry_after)


class TooManyPending(RateLimited):
    code = "too_many_pending"


class Draining(NodeError):
    code = "draining"
    http_status = 503
    retryable = True


class InsufficientReplicas(NodeError):
    """Fewer than `minInSync` nodes hold the bytes: the publish is not acknowledged. It is
    stored here and announced; retrying the same publish completes it (Kafka's
    NOT_ENOUGH_REPLICAS)."""

    code = "insufficient_replicas"
    http_status = 503
    retryable = True


class StorageFull(NodeError):
    """The data volume has no room for what the request would write: nothing was written,
    what was acknowledged before is kept. Retryable once space returns (WebDAV's 507
    Insufficient Storage, RFC 4918 §11.5)."""

    code = "storage_full"
    http_status = 507
    retryable = True


class ClockSkewed(NodeError):
    """Most of this node's peers sign with a clock far from its own, so its own wall clock
    is the suspect: it refuses to judge a timestamp's freshness rather than blame the
    caller. Retryable once the clock is corrected."""

    code = "clock_skewed"
    http_status = 503
    retryable = True


class UpstreamFailed(NodeError):
    code = "upstream_failed"
    http_status = 502
    retryable = True


class DestinationRefused(UpstreamFailed):
    """A peer address outside the networks this node may call (SSRF guard)."""

    code = "destination_refused"
    retryable = False


class UpstreamTimeout(UpstreamFailed, TimeoutError):
    code = "upstream_timeout"
    http_status = 504


class IntegrityError(NodeError):
    """Content that contradicts the digest its publisher signed. Served by providers: a 502
    naming them in `details`, not retryable (the same providers would serve the same bytes);
    a client's own upload: a 400 (`http_api.put_blob`)."""

    code = "integrity_failed"
    http_status = 502
