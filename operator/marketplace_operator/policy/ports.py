"""The worker's ports and shared state: what it reads, what it writes, what it remembers.

Protocols, not implementations: `handlers/policy.py` implements them over kopf's
indexes and the Kube adapter; the unit tests over plain fakes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from marketplace_protocol.admin import Peering, Replication

from marketplace_operator.model.banlist import BanList
from marketplace_operator.model.ratelimitpolicy import RateLimitPolicy
from marketplace_operator.policy.propagate import NodeTarget
from marketplace_operator.policy.versioning import PolicyVersion

AUTO_SUFFIX = "-auto"


def auto_banlist_name(fleet: str) -> str:
    return f"{fleet}{AUTO_SUFFIX}"


class FleetWire(NamedTuple):
    """What a MarketplaceFleet contributes to its fleet's policy document."""

    replication: Replication
    peering: Peering | None


@dataclass(frozen=True, order=True)
class FleetKey:
    namespace: str
    fleet: str


@dataclass(frozen=True)
class ObjectRef:
    """A BanList or RateLimitPolicy to write status or Events to."""

    plural: str
    namespace: str
    name: str
    uid: str
    generation: int


@dataclass(frozen=True)
class InvalidObject:
    """An object the API server accepted but the operator cannot read; blocks its fleets."""

    ref: ObjectRef
    fleet: str
    message: str


class Inputs(Protocol):
    def banlists(self, namespace: str) -> Sequence[BanList]: ...
    def policies(self, namespace: str) -> Sequence[RateLimitPolicy]: ...
    def invalid(self, namespace: str) -> Sequence[InvalidObject]: ...
    def nodes(self, key: FleetKey) -> Sequence[NodeTarget]: ...
    def fleets(self) -> Collection[FleetKey]: ...
    def replication(self, key: FleetKey) -> Replication | None:
        """The MarketplaceFleet's `spec.replication` (None: no fleet object yet)."""
        ...

    def peering(self, key: FleetKey) -> Peering | None:
        """The MarketplaceFleet's `spec.peering` (None: unset, or no fleet object yet)."""
        ...

    def fleet_uid(self, key: FleetKey) -> str | None:
        """The uid of the fleet's policy ConfigMap (None: not there): a fleet deleted and
        recreated under its name is a new fleet, whose state starts afresh."""
        ...


class Cluster(Protocol):
    """The Kubernetes calls the worker makes (coroutines on the operator's loop)."""

    async def read_version(self, key: FleetKey) -> PolicyVersion | None:
        """The stored version; raises errors.NotFound if the fleet ConfigMap does not exist."""
        ...

    async def write_policy(
        self, key: FleetKey, patch: dict[str, Any], shards: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Patch shard ConfigMap i+1 with `shards[i]` (creating it), then the fleet's."""
        ...

    async def write_auto_banlist(self, key: FleetKey, entries: list[dict[str, Any]]) -> None: ...
    async def write_status(self, ref: ObjectRef, status: dict[str, Any]) -> None: ...
    async def event(self, ref: ObjectRef, *, reason: str, message: str, warning: bool) -> None: ...


UNREAD = PolicyVersion(-1, "")
"""`FleetState.stored` before the ConfigMap was read (None: read, no version yet)."""


@dataclass
class FleetState:
    """What the worker knows about one fleet; all of it can be rebuilt from the API and nodes."""

    uid: str | None = None  # the fleet ConfigMap's uid this state is about
    stored: PolicyVersion | None = UNREAD
    floor: int = 0
    applied: dict[NodeTarget, int] = field(default_factory=dict)
    # The nodes whose status poll was heard (`PolicyWorker.heard`): a node's first answer is
    # news even when it names no version (it started before the ConfigMap held one).
    heard: set[NodeTarget] = field(default_factory=set)
    # How many local bans each node's last status poll said it holds (None: a node that
    # predates the count): the sweep asks only those that hold some or do not say.
    local_bans: dict[NodeTarget, int | None] = field(default_factory=dict)
    problem: str | None = None
    blamed: tuple[str, ...] = ()  # names of the objects the problem is about
    changed_at: float | None = None  # monotonic time of the change not yet acknowledged by all
    logged: int | None = None  # last version reported in the log
    # (uid, generation) of each BanList and RateLimitPolicy whose spec is in the stored
    # policy: a list's status says whether its own entries are enforced.
    included: frozenset[tuple[str, int]] = frozenset()

    def keep_only(self, present: AbstractSet[NodeTarget]) -> None:
        """Forget the nodes that are gone (replaced pods leave their targets behind)."""
        self.applied = {n: v for n, v in self.applied.items() if n in present}
        self.heard &= present
        self.local_bans = {n: c for n, c in self.local_bans.items() if n in present}
