"""What every handler shares, built once at startup and passed through kopf's memo."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from marketplace_operator.admintoken import AdminTokens
from marketplace_operator.k8s import Kube
from marketplace_operator.metrics import Metrics
from marketplace_operator.model.mnode import Phase
from marketplace_operator.nodeclient import NodeClient
from marketplace_operator.reconcile.fleet import MemberPod, one_at_a_time
from marketplace_operator.reconcile.gate import PollMemory
from marketplace_operator.settings import Settings

NodeKey = tuple[str, str]  # (namespace, name)
ReplaceGate = Callable[[Sequence[MemberPod], str], bool]


class Wakeups:
    """Per-node events that pull a node's control loop out of its sleep early."""

    def __init__(self) -> None:
        self._events: dict[NodeKey, asyncio.Event] = {}

    def register(self, key: NodeKey) -> asyncio.Event:
        return self._events.setdefault(key, asyncio.Event())

    def unregister(self, key: NodeKey) -> None:
        self._events.pop(key, None)

    def wake(self, key: NodeKey) -> None:
        event = self._events.get(key)
        if event is not None:
            event.set()

    @staticmethod
    async def sleep(wake: asyncio.Event, seconds: float, *, debounce: float) -> None:
        """A control loop's pause: up to `seconds`, or until `wake` is set and then
        `debounce` more, so that a burst of wake-ups makes one pass, not one each.
        Clears `wake`: what woke it is seen by the pass that follows."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=seconds)
            await asyncio.sleep(debounce)
        wake.clear()


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
    wakeups: Wakeups = field(default_factory=Wakeups)
    phases: dict[NodeKey, Phase] = field(default_factory=dict)
    # pod uid -> digest of the members last pushed to that pod's node.
    pushed_members: dict[str, str] = field(default_factory=dict)
    # StorageClass name -> its volumeBindingMode (None: could not read it).
    binding_modes: dict[str, str | None] = field(default_factory=dict)
    # (namespace, pod) -> (ip, deleting, uid) as last seen, to tell address changes apart.
    pod_addresses: dict[NodeKey, tuple[str | None, bool, str]] = field(default_factory=dict)
    # (namespace, node) -> its pod's status-poll history, for the `joined` gate's hysteresis.
    polls: dict[NodeKey, PollMemory] = field(default_factory=dict)
    # (namespace, node) -> monotonic time of its last status write, to pace peer counts.
    status_written: dict[NodeKey, float] = field(default_factory=dict)
    # (namespace, node) -> what of the MarketplaceNode its reconcile last woke for.
    intents: dict[NodeKey, Hashable] = field(default_factory=dict)
