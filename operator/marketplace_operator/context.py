"""What every handler shares, built once at startup and passed through kopf's memo."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from marketplace_protocol.admin import NodeStatus

from marketplace_operator.admintoken import AdminTokens
from marketplace_operator.k8s import Kube
from marketplace_operator.metrics import Metrics
from marketplace_operator.model.mnode import Phase
from marketplace_operator.nodeclient import NodeClient
from marketplace_operator.policy.propagate import NodeTarget
from marketplace_operator.reconcile import pacing
from marketplace_operator.reconcile.fleet import MemberPod, one_at_a_time
from marketplace_operator.reconcile.gate import PollMemory
from marketplace_operator.render.pod import PodInputs
from marketplace_operator.settings import Settings
from marketplace_operator.turnstile import Turnstile

NodeKey = tuple[str, str]  # (namespace, name)
ReplaceGate = Callable[[Sequence[MemberPod], str], bool]
# (namespace, fleet, node, its applied policy version): what a status poll found.
PolicyHeard = Callable[[str, str, NodeTarget, NodeStatus], None]


def _unheard(namespace: str, fleet: str, node: NodeTarget, status: NodeStatus) -> None:
    """Fleet policy is not run here (disabled, or its worker not started yet)."""


T = TypeVar("T")


class FleetMemo:
    """Values derived from a whole fleet, recomputed only when their inputs changed.

    Every member's pass reads its fleet (the members to announce): N members deriving the
    same O(N) value each pass is O(N^2) per poll round. The inputs are what kopf's
    indexes hold, compared with `==`: the same objects short-circuit, so an unchanged
    fleet costs one C-level scan of references. They change at every pod status write,
    most of which do not touch the value: `projection` (optional) picks what the value
    depends on, cheaper to build and compare than the value is to compute, so only a
    change of that recomputes it. `fresh_for`: a value checked that recently is taken
    as it is, without building the projection (O(N) in Python): in a rolling fleet of
    1,000 the inputs differ at almost every pass. One entry per (kind, fleet).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        # (inputs, projection, value, when last checked)
        self._values: dict[Hashable, tuple[Any, Any, Any, float]] = {}
        self._clock = clock

    def peek(self, key: Hashable) -> Any:
        """The value last computed for `key` (None: none yet), to build the next from."""
        hit = self._values.get(key)
        return hit[2] if hit is not None else None

    def get(
        self,
        key: Hashable,
        inputs: object,
        compute: Callable[[], T],
        projection: Callable[[], object] | None = None,
        *,
        fresh_for: float = 0.0,
    ) -> T:
        hit = self._values.get(key)
        now = self._clock()
        if hit is not None and (hit[0] == inputs or now - hit[3] < fresh_for):
            value: T = hit[2]
            return value
        seen = projection() if projection is not None else inputs
        if hit is not None and hit[1] == seen:
            self._values[key] = (inputs, seen, hit[2], now)
            kept: T = hit[2]
            return kept
        value = compute()
        self._values[key] = (inputs, seen, value, now)
        return value


class Wakeups:
    """Per-node events that pull a node's control loop out of its sleep early."""

    def __init__(self) -> None:
        self._events: dict[NodeKey, asyncio.Event] = {}
        self._node_keys: set[NodeKey] = set()  # the keys of node loops (not fleet loops)

    def register(self, key: NodeKey, *, node: bool = True) -> asyncio.Event:
        """The wake-up event of `key`'s loop: a node's, or (`node=False`) a fleet's."""
        if key not in self._events:
            self._events[key] = asyncio.Event()
            if node:
                self._node_keys.add(key)
        return self._events[key]

    def unregister(self, key: NodeKey) -> None:
        self._events.pop(key, None)
        self._node_keys.discard(key)

    def nodes(self) -> int:
        """How many node loops are registered: the fleet's size as the loops see it."""
        return len(self._node_keys)

    def wake(self, key: NodeKey) -> None:
        event = self._events.get(key)
        if event is not None:
            event.set()

    @staticmethod
    async def sleep(wake: asyncio.Event, seconds: float, *, debounce: float) -> bool:
        """A control loop's pause: up to `seconds`, or until `wake` is set and then
        `debounce` more, so that a burst of wake-ups makes one pass, not one each.
        Clears `wake`: what woke it is seen by the pass that follows. True when woken."""
        try:
            await asyncio.wait_for(wake.wait(), timeout=seconds)
        except TimeoutError:
            woken = False
        else:
            woken = True
            await asyncio.sleep(debounce)
        wake.clear()
        return woken


@dataclass(frozen=True, slots=True)
class Answer:
    """A node's last status answer: which pod gave it, when (monotonic seconds), what, and
    the fleet's policy version then (the gate compares the node's with it)."""

    pod_uid: str
    at: float
    node: NodeStatus
    policy: int | None = None
    restarts: int = 0  # the pod's container restarts then: a restarted process is asked


# How old a node's answer a pass woken by watch events may use, at least: the node's routine
# poll interval when it is longer (`Context.event_reuse`). Those passes bring the pod's news
# (the kubelet's, the rollout's), not the node's, which the clock's passes ask for. With 1 s,
# at 1,000 nodes, where one node's events come seconds apart, event passes asked 7.8 times
# per replaced node (2.6 at 100).
REUSED_ANSWER_SECONDS = 5.0
# How long answers are kept at least (`Context.answers_kept`, `RecentAnswers`).
ANSWERS_KEPT_SECONDS = 6.0


class RecentAnswers:
    """The nodes' status answers of the last `ttl` seconds, one per node: only those may be
    reused (`nodeloop._poll_or_reuse`), so only those are kept. One kept per node until its
    next poll, each a `NodeStatus` listing up to 64 peers, was 30 MiB at 1,000 nodes
    (issue 15). Insertion order is answer order, so the expired are at the front. (Not
    cachetools' TTLCache: the operator's image does not ship it, for these few lines.)"""

    def __init__(
        self, ttl: Callable[[], float], clock: Callable[[], float] = time.monotonic
    ) -> None:
        """`ttl`: asked at each use; it stretches with the fleet (`Context.answers_kept`)."""
        self._ttl, self._clock = ttl, clock
        self._items: OrderedDict[NodeKey, Answer] = OrderedDict()

    def get(self, key: NodeKey) -> Answer | None:
        self._expire()
        return self._items.get(key)

    def put(self, key: NodeKey, answer: Answer) -> None:
        self._items.pop(key, None)
        self._items[key] = answer
        self._expire()

    def drop(self, key: NodeKey) -> None:
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)

    def _expire(self) -> None:
        now, ttl = self._clock(), self._ttl()
        while self._items:
            key, oldest = next(iter(self._items.items()))
            if now - oldest.at <= ttl:
                return
            del self._items[key]


@dataclass(frozen=True)
class PushedMembers:
    """The member list last pushed to a node's pod (`nodeloop.members_push_due`)."""

    pod_uid: str
    digest: str
    at: float  # monotonic seconds
    others: int  # the other members it listed
    # The fleet's peer ids by node (`Views.peer_ids`, one object per roster) when pushed:
    # the same object again means only addresses moved since (`members_push_due`).
    roster: object = None


@dataclass
class NodeState:
    """What the operator remembers of one node between passes, in one place: created on
    first use, dropped when nothing of the node is left to remember (`Context.release`)."""

    phase: Phase | None = None
    poll: PollMemory | None = None  # its pod's status-poll history (the gate's hysteresis)
    status_written: float | None = None  # monotonic time of its last status write (pacing)
    # (monotonic time, the status patch) of its last status write, and (pod uid, monotonic
    # time, the gate) of its last gate write: trusted until the body or pod view shows them
    # (`nodeloop.written_status`, `gate_written`)
    written: tuple[float, dict[str, Any]] | None = None
    gate: tuple[str, float, bool] | None = None
    intent: Hashable | None = None  # what of the MarketplaceNode its reconcile last woke for
    pod_address: tuple[str | None, bool, str] | None = None  # (ip, deleting, uid) last seen
    pushed_members: PushedMembers | None = None  # what its pod was last told of its fleet
    members_written: float | None = None  # monotonic time it last wrote members.json (leader)
    inputs: tuple[Hashable, PodInputs] | None = None  # (key, its pod inputs) (`nodeloop._inputs`)

    def idle(self) -> bool:
        return all(v is None for v in vars(self).values())


@dataclass
class Context:
    settings: Settings
    kube: Kube
    nodes: NodeClient
    metrics: Metrics
    tokens: AdminTokens  # the one cache of fleet admin tokens (core, rollout and policy)
    # Fleet policy is run by this operator: a node is joined only once it has a policy.
    policy_required: bool = True
    # The rollout engineer replaces this with the fleet-paced planner's decision.
    may_replace: ReplaceGate = one_at_a_time
    # The policy worker replaces this: each node's applied version, from its status poll.
    policy_heard: PolicyHeard = _unheard
    wakeups: Wakeups = field(default_factory=Wakeups)
    fleets: FleetMemo = field(default_factory=FleetMemo)
    # Node passes in flight (`Settings.reconcile_concurrency`): the one turnstile.
    passes: Turnstile = field(
        default_factory=lambda: Turnstile(Settings.model_fields["reconcile_concurrency"].default)
    )
    # (namespace, node) -> what is remembered of it; the one per-node store.
    node_states: dict[NodeKey, NodeState] = field(default_factory=dict)
    # The nodes polled at the start-up pace (`poll_interval`).
    joining: dict[NodeKey, float] = field(default_factory=dict)  # -> monotonic s it began
    # StorageClass name -> its volumeBindingMode (None: could not read it).
    binding_modes: dict[str, str | None] = field(default_factory=dict)
    # Kubernetes Node name -> (monotonic time asked, the read): read only for nodes whose pod
    # is not serving, and shared for a moment by all of them (a lost Node has many).
    kube_nodes: dict[str, tuple[float, asyncio.Future[dict[str, Any] | None]]] = field(
        default_factory=dict
    )
    answers: RecentAnswers = field(init=False)

    def __post_init__(self) -> None:
        self.answers = RecentAnswers(self.answers_kept)

    def poll_interval(self, *, joining: float | None = None) -> float:
        """Seconds between two polls of a node now (`pacing`): a node joining for `joining`
        seconds among the nodes joining (backing off as it waits), any other's among all
        the nodes whose loops run (`Wakeups.nodes`)."""
        s = self.settings
        if joining is not None:
            return pacing.paced_interval(
                pacing.joining_interval(s.startup_poll_interval_seconds, joining),
                len(self.joining),
                s.startup_polls_per_second,
            )
        return pacing.paced_interval(
            s.poll_interval_seconds, self.wakeups.nodes(), s.polls_per_second
        )

    def event_reuse(self) -> float:
        """How old an answer of a node a pass woken by watch events may use: its routine
        poll interval (`REUSED_ANSWER_SECONDS` at least). A node's own news is the clock's
        passes' to ask for, at that interval; answers reused for 5 s in a 1,000-node
        rollout, where a node's events come tens of seconds apart and its routine polls
        50 s apart, still left 5 asked event passes per replaced node (1.4 at 100,
        issue 15)."""
        return max(REUSED_ANSWER_SECONDS, self.poll_interval())

    def answers_kept(self) -> float:
        """How long a node's answer is kept: as long as any pass may use it (an event
        pass's `event_reuse`, a paced write's `write_interval` and then some)."""
        return max(
            ANSWERS_KEPT_SECONDS,
            self.event_reuse() + 1.0,
            self.write_interval() + REUSED_ANSWER_SECONDS,
        )

    def write_interval(self) -> float:
        """The least seconds between two paced status writes of a node (`status_delay`):
        all nodes together write at most `status_writes_per_second` of them."""
        return pacing.paced_interval(
            0.0, self.wakeups.nodes(), self.settings.status_writes_per_second
        )

    def node(self, key: NodeKey) -> NodeState:
        return self.node_states.setdefault(key, NodeState())

    def release(self, key: NodeKey) -> None:
        """Drop the node's state once nothing in it is left (its loop ended, its pod went)."""
        state = self.node_states.get(key)
        if state is not None and state.idle():
            del self.node_states[key]

    def phases(self) -> dict[NodeKey, Phase]:
        return {k: s.phase for k, s in self.node_states.items() if s.phase is not None}
