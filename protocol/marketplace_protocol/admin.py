"""Wire models of the admin API (`/admin/v1/`), shared by the node and the operator.

These are the one definition of the documents that cross the node/operator
boundary; both sides import them so the contract cannot drift.
"""

from __future__ import annotations

import enum
import ipaddress
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

PEER_ID_PATTERN = r"^[A-Za-z0-9_-]{8,128}$"
PeerId = Annotated[str, Field(pattern=PEER_ID_PATTERN)]
PACKAGE_NAME_MAX = 128
PACKAGE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
VERSION_MAX = 64
VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$"
DIGEST_PATTERN = r"^[0-9a-f]{64}$"
PACKAGE_REF_PATTERN = rf"^{PACKAGE_NAME_PATTERN[1:-1]}@{VERSION_PATTERN[1:-1]}$"
"""`name@version`: a package name (no `@` in it) and one exact version."""


class WireModel(BaseModel):
    """Strict camelCase-on-the-wire base: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Operation(enum.StrEnum):
    """Peer-facing operations that carry their own rate limits."""

    SEARCH = "search"
    PUBLISH = "publish"
    FETCH = "fetch"
    GOSSIP = "gossip"
    SUBSCRIBE = "subscribe"


class Limit(WireModel):
    """A GCRA / token-bucket limit: sustained `rate` per second, bursts up to `burst`."""

    rate: float = Field(gt=0, le=1_000_000)
    burst: int = Field(ge=1, le=1_000_000)


class Escalation(WireModel):
    """How rate-limit and protocol violations escalate into bans of growing length."""

    threshold: int = Field(default=20, ge=1, le=1_000_000)  # violations per window that ban
    window_seconds: float = Field(default=60.0, gt=0, le=86_400, alias="windowSeconds")
    first_ban_seconds: float = Field(default=60.0, gt=0, le=31_536_000, alias="firstBanSeconds")
    backoff_factor: float = Field(default=2.0, ge=1.0, le=100.0, alias="backoffFactor")
    max_ban_seconds: float = Field(default=86_400.0, gt=0, le=31_536_000, alias="maxBanSeconds")
    # How long a banned peer waits for its 403, slowing its retries; 0 answers at once.
    # Left out of documents when 1.0, the hold of nodes that predate the field: their
    # wire models refuse unknown fields, and they keep taking a default policy.
    tarpit_seconds: float = Field(
        default=1.0,
        ge=0,
        le=30,
        alias="tarpitSeconds",
        exclude_if=lambda seconds: seconds == 1.0,
    )

    @model_validator(mode="after")
    def _first_within_max(self) -> Escalation:
        if self.first_ban_seconds > self.max_ban_seconds:
            raise ValueError("firstBanSeconds must not exceed maxBanSeconds")
        return self


def _default_operations() -> dict[Operation, Limit]:
    return {
        Operation.SEARCH: Limit(rate=50, burst=100),
        Operation.PUBLISH: Limit(rate=5, burst=10),
        Operation.FETCH: Limit(rate=20, burst=40),
        Operation.GOSSIP: Limit(rate=200, burst=400),
        Operation.SUBSCRIBE: Limit(rate=2, burst=5),
    }


DEFAULT_PER_PUBLISHER = Limit(rate=2, burst=50)
"""Publishes and owner records per author key, per node: a release of 50 at once, then 2/s."""


class RateLimits(WireModel):
    """Per-operation per-peer limits, a per-publisher limit, a global limit, the
    pending-query cap and escalation."""

    per_peer: dict[Operation, Limit] = Field(default_factory=_default_operations, alias="perPeer")
    # Per author key (after its signature is verified), on top of the per-address
    # `publish` limit. Left out when default, for nodes that predate it (`tarpitSeconds`).
    per_publisher: Limit = Field(
        default=DEFAULT_PER_PUBLISHER,
        alias="perPublisher",
        exclude_if=lambda limit: limit == DEFAULT_PER_PUBLISHER,
    )
    global_: Limit = Field(default_factory=lambda: Limit(rate=2_000, burst=4_000), alias="global")
    max_pending_queries: int = Field(default=256, ge=1, le=100_000, alias="maxPendingQueries")
    escalation: Escalation = Field(default_factory=Escalation)


class BanEntry(WireModel):
    """One ban: exactly one of `peerId` and `cidr`; `expiresAt` None means until lifted."""

    peer_id: PeerId | None = Field(default=None, alias="peerId")
    cidr: str | None = Field(default=None, max_length=64)
    reason: str = Field(default="", max_length=256)
    expires_at: datetime | None = Field(default=None, alias="expiresAt")
    source: str = Field(default="", max_length=256)  # who decided it: a BanList or a node

    @model_validator(mode="after")
    def _one_target(self) -> BanEntry:
        if (self.peer_id is None) == (self.cidr is None):
            raise ValueError("exactly one of peerId and cidr must be set")
        if self.cidr is not None:
            ipaddress.ip_network(self.cidr, strict=False)
        return self


class ContentBlock(WireModel):
    """A takedown: exactly one of a content digest, a `name@version`, a whole name or a
    publisher (author id). Nodes stop serving, announcing and replicating what it matches;
    `expiresAt` None means until lifted; `source` is its BanList (provenance)."""

    digest: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    package: str | None = Field(
        default=None, max_length=PACKAGE_NAME_MAX + 1 + VERSION_MAX, pattern=PACKAGE_REF_PATTERN
    )
    name: str | None = Field(
        default=None, max_length=PACKAGE_NAME_MAX, pattern=PACKAGE_NAME_PATTERN
    )
    publisher: PeerId | None = None
    reason: str = Field(default="", max_length=256)
    expires_at: datetime | None = Field(default=None, alias="expiresAt")
    source: str = Field(default="", max_length=256)

    @model_validator(mode="after")
    def _one_target(self) -> ContentBlock:
        targets = (self.digest, self.package, self.name, self.publisher)
        if sum(t is not None for t in targets) != 1:
            raise ValueError("exactly one of digest, package, name and publisher must be set")
        return self


MAX_POLICY_BANS = 50_000
MAX_REPLICATION = 64


class Replication(WireModel):
    """A fleet's durability setting (MarketplaceFleet `spec.replication`): `factor` copies
    of every package, a publish acknowledged once `minInSync` of them hold it."""

    factor: int = Field(default=3, ge=1, le=MAX_REPLICATION)
    min_in_sync: int = Field(default=2, ge=1, le=MAX_REPLICATION, alias="minInSync")

    @model_validator(mode="after")
    def _in_sync_within_factor(self) -> Replication:
        if self.min_in_sync > self.factor:
            raise ValueError("minInSync must not exceed factor")
        return self


MAX_PEER_NETWORKS = 256
MAX_SEEDS = 64


class Peering(WireModel):
    """A fleet's peering beyond itself (MarketplaceFleet `spec.peering`): a peer that is not a
    member of the fleet is admitted only from `allowedNetworks` (CIDRs); `seeds` are base
    URLs outside the fleet its nodes greet as they greet bootstrap peers. Bans still win."""

    allowed_networks: tuple[str, ...] = Field(
        default=(), max_length=MAX_PEER_NETWORKS, alias="allowedNetworks"
    )
    seeds: tuple[Annotated[str, Field(max_length=256)], ...] = Field(
        default=(), max_length=MAX_SEEDS
    )

    @model_validator(mode="after")
    def _networks(self) -> Peering:
        for cidr in self.allowed_networks:
            ipaddress.ip_network(cidr, strict=False)
        return self


class PolicyDocument(WireModel):
    """The whole effective policy of a fleet, pushed with `PUT /admin/v1/policy`.

    `version` is a per-fleet generation that only grows; a node refuses a
    document older than the one it applied (rollback protection).
    """

    version: int = Field(ge=0)
    hash: str = Field(default="", max_length=80)
    bans: list[BanEntry] = Field(default_factory=list, max_length=MAX_POLICY_BANS)
    # Left out when empty, for nodes that predate takedowns (see `replication`).
    blocks: list[ContentBlock] = Field(
        default_factory=list, max_length=MAX_POLICY_BANS, exclude_if=lambda blocks: not blocks
    )
    rate_limits: RateLimits = Field(default_factory=RateLimits, alias="rateLimits")
    # None: the node's own settings. Left out of documents when None, so nodes that
    # predate the field (their wire models refuse unknown fields) take the rest.
    replication: Replication | None = Field(
        default=None, exclude_if=lambda replication: replication is None
    )
    # None: no MarketplaceFleet says anything: peers of the fleet only, from anywhere.
    # Left out when None (see `replication`).
    peering: Peering | None = Field(default=None, exclude_if=lambda peering: peering is None)


class PolicyApplied(WireModel):
    """Answer to a policy PUT: the version now in force."""

    version: int
    hash: str = ""


class PeerInfo(WireModel):
    peer_id: str = Field(alias="peerId")
    address: str


class DrainState(enum.StrEnum):
    SERVING = "serving"
    DRAINING = "draining"
    DRAINED = "drained"


class DrainRequest(WireModel):
    timeout_seconds: float | None = Field(default=None, gt=0, le=3_600, alias="timeoutSeconds")


class DrainStatus(WireModel):
    state: DrainState
    in_flight: int = Field(alias="inFlight")
    started_at: datetime | None = Field(default=None, alias="startedAt")
    handed_off_providers: int = Field(default=0, alias="handedOffProviders")


STATUS_PEERS_QUERY = "peers"
"""`GET /admin/v1/status?peers=K`: list at most K peers (the fleet's first), and count all
in `peerCount`. A fleet of N nodes listing every peer was O(N) to render and parse per
poll, O(N^2) per poll round for the operator: a third of its CPU at 300 nodes (issue 15).
A node that predates the parameter lists all and no `peerCount`."""


class NodeStatus(WireModel):
    """Answer to `GET /admin/v1/status`."""

    peer_id: str = Field(alias="peerId")
    fleet: str = ""
    peers: list[PeerInfo] = Field(default_factory=list)
    # All the node's peers when `peers` lists only some (`STATUS_PEERS_QUERY`); left out
    # otherwise, so operators that predate the field read the answers they ask for.
    peer_count: int | None = Field(
        default=None, ge=0, alias="peerCount", exclude_if=lambda count: count is None
    )
    policy_version: int | None = Field(default=None, alias="policyVersion")
    policy_hash: str = Field(default="", alias="policyHash")
    draining: bool = False
    in_flight: int = Field(default=0, alias="inFlight")
    ready: bool = False
    packages: int = 0
    # Packages this node knows below the factor, as of its repairer's last pass. Left
    # out when 0, so operators that predate the field read healthy nodes' answers.
    under_replicated: int = Field(
        default=0, ge=0, alias="underReplicated", exclude_if=lambda count: count == 0
    )
    # The data volume has less free space than its reserve: content is refused (507
    # `storage_full`). Left out when false, as above.
    storage_full: bool = Field(default=False, alias="storageFull", exclude_if=lambda f: not f)
    # This node's wall clock minus its peers', when most of them place it more than 30 s
    # off (`peerclocks`); left out when 0.
    clock_offset_seconds: int = Field(
        default=0, alias="clockOffsetSeconds", exclude_if=lambda s: s == 0
    )
    # How many local bans the node holds (`GET /admin/v1/bans/local`; lapsed ones not yet
    # pruned may count): at 0 the operator's local-ban sweep need not ask it. None: a node
    # that predates the field (asked every sweep).
    local_bans: int | None = Field(
        default=None, ge=0, alias="localBans", exclude_if=lambda count: count is None
    )

    def listing(self, limit: int) -> NodeStatus:
        """This status with at most `limit` peers listed, in the order given (a node lists
        its fleet's first), and all of them counted."""
        return self.model_copy(update={"peers": self.peers[:limit], "peer_count": self.all_peers})

    @property
    def all_peers(self) -> int:
        """How many peers the node has, listed or not."""
        return self.peer_count if self.peer_count is not None else len(self.peers)


class LocalBan(WireModel):
    """A ban this node decided itself, with provenance, for the operator to spread."""

    peer_id: PeerId | None = Field(default=None, alias="peerId")
    cidr: str | None = None
    reason: str
    offences: int = Field(ge=1)
    banned_at: datetime = Field(alias="bannedAt")
    expires_at: datetime | None = Field(default=None, alias="expiresAt")


class LocalBans(WireModel):
    peer_id: str = Field(alias="peerId")
    bans: list[LocalBan] = Field(default_factory=list)


class Member(WireModel):
    """A fleet member as the operator sees it: where to reach it (pod IP) and who it is."""

    address: str = Field(max_length=256, description="base URL, e.g. http://127.1.0.5:7070")
    peer_id: PeerId | None = Field(default=None, alias="peerId")
    name: str = Field(default="", max_length=253)
    # Where peers outside the fleet reach it (the fleet's entry Service: a NodePort on its
    # Node, or the balancer). Left out when None, for nodes that predate it.
    external: str | None = Field(
        default=None, max_length=256, exclude_if=lambda external: external is None
    )


class Members(WireModel):
    """Body of `PUT /admin/v1/members`: the current members of the node's fleet."""

    members: list[Member] = Field(default_factory=list, max_length=10_000)


class ErrorBody(WireModel):
    """Every error answer of every HTTP API of the node: a stable code and a message."""

    code: str
    message: str
    retryable: bool = False
    details: dict[str, str] = Field(default_factory=dict)
