"""What the rollout planner sees of one fleet: immutable, built by handlers from the API.

Every field comes from the Kubernetes API or a node's admin API, never from
the operator's memory, so a restarted operator sees exactly what the one it
replaced saw.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import timedelta

from marketplace_operator.model.fleet import RolloutFailure, RolloutStep


class Drain(enum.StrEnum):
    """A node's drain state as its admin API reports it; UNKNOWN when not asked or unreachable."""

    SERVING = "serving"
    DRAINING = "draining"
    DRAINED = "drained"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Revision:
    """What shapes a pod: the core's pod-template hash and the restart token (restartedAt)."""

    template_hash: str
    restart: str | None = None

    def satisfies(self, desired: Revision) -> bool:
        """A pod of this revision is what `desired` asks for: the hash covers the token too,
        which is only carried alongside to tell *why* a pod is stale."""
        return self.template_hash == desired.template_hash


@dataclass(frozen=True, slots=True)
class PodView:
    """The node's pod as observed; `revision` is what the pod was created from."""

    revision: Revision
    uid: str = ""
    ready: bool = True
    joined: bool = True
    deleting: bool = False
    failed: bool = False
    leaving: bool = False  # marked by the rollout: its gate stays off until it is replaced
    drain: Drain = Drain.UNKNOWN
    routed: bool | None = None
    """Listed as a ready endpoint in an EndpointSlice (what load balancers act on): True;
    listed as ready nowhere: False; not known (slices not read): None."""

    @property
    def available(self) -> bool:
        """Serving clients: Ready (which includes the `joined` gate), joined, not leaving."""
        return (
            self.ready
            and self.joined
            and not self.deleting
            and not self.failed
            and not self.leaving
            and self.drain in (Drain.SERVING, Drain.UNKNOWN)
        )


@dataclass(frozen=True, slots=True)
class NodeView:
    """One MarketplaceNode: what it should run and what its pod runs (None: no pod)."""

    name: str
    desired: Revision
    pod: PodView | None
    grace: timedelta = timedelta(seconds=30)
    """The node's drain timeout: the most a drain, and then the pod's termination, may take."""
    peer_id: str | None = None
    peers: frozenset[str] | None = None
    """Peer ids the node is connected to (from its status); None when unknown."""
    peer_count: int = 0
    """How many peers it has; more than `len(peers)` when the status lists only the first."""

    @property
    def available(self) -> bool:
        return self.pod is not None and self.pod.available

    @property
    def on_target(self) -> bool:
        """The pod runs the desired revision and is not on its way out."""
        return (
            self.pod is not None
            and not self.pod.deleting
            and self.pod.revision.satisfies(self.desired)
        )


@dataclass(frozen=True, slots=True)
class FleetSettings:
    max_unavailable: int = 1
    paused: bool = False
    step_timeout: timedelta = timedelta(seconds=300)
    settle: timedelta = timedelta(seconds=1)
    """The longest an unready leaving pod waits to be dropped from the EndpointSlices
    before its drain; it moves on at once when no slice lists it as ready any more."""

    def __post_init__(self) -> None:
        if self.max_unavailable < 1:
            raise ValueError("max_unavailable must be at least 1")


@dataclass(frozen=True, slots=True)
class Record:
    """The rollout's durable record, as read from (and written to) the fleet's status."""

    steps: tuple[RolloutStep, ...] = ()
    failures: tuple[RolloutFailure, ...] = ()


@dataclass(frozen=True, slots=True)
class FleetView:
    """One fleet, observed: its nodes, its settings and the rollout's record."""

    fleet: str
    nodes: tuple[NodeView, ...]
    settings: FleetSettings = field(default_factory=FleetSettings)
    record: Record = field(default_factory=Record)
