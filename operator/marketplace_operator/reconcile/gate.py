"""The `joined` readiness gate with hysteresis against failed status polls.

A single failed admin poll says little about the node (a slow machine, a busy event
loop): turning the gate off for it makes a healthy pod briefly unready, which the fleet
rollout and the PodDisruptionBudget then count as unavailable. So an unanswered poll
turns an ON gate off only after `failures` consecutive ones or `silence` without any
answer. Everything the node *says* takes effect at once: not ready, draining, no fleet
peers, behind on policy, and a pod the rollout marked leaving.

The memory is per pod and kept in the operator's memory only. After an operator
restart it starts as "answered just now, no failures": an ON gate is not turned off
merely because the operator restarted, and an OFF gate still needs an answer to turn on.
A crashed node is not kept in service by this: its readiness probe fails at the kubelet.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from marketplace_protocol.admin import NodeStatus

from marketplace_operator.reconcile.observe import PodView
from marketplace_operator.reconcile.status import joined


class OthersOf(AbstractSet[str]):
    """The fleet's peer ids but one member's: a view of the fleet's one set, not a copy.

    Every node's pass asks the gate about the *other* members. A set built per pass was
    O(N) per node, and while every node's pass awaits its poll there are N of them at
    once: about 70 MiB of sets and dicts at 1,000 nodes (tracemalloc, issue 15).
    """

    __slots__ = ("_ids", "_own")

    def __init__(self, ids: AbstractSet[str], own: str | None) -> None:
        self._ids, self._own = ids, own

    def __contains__(self, item: object) -> bool:
        return item != self._own and item in self._ids

    def __len__(self) -> int:
        return len(self._ids) - (self._own in self._ids)

    def __iter__(self) -> Iterator[str]:
        return (i for i in self._ids if i != self._own)


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How much silence from a joined node is tolerated before its gate goes off."""

    failures: int = 3
    silence: float = 15.0


@dataclass(frozen=True, slots=True)
class PollMemory:
    """One pod's recent poll history: consecutive failures and the last answer (monotonic s)."""

    pod_uid: str
    failures: int
    last_answer: float

    @classmethod
    def fresh(cls, pod_uid: str, now: float) -> PollMemory:
        """What an operator that has not polled this pod yet assumes (see module docstring)."""
        return cls(pod_uid=pod_uid, failures=0, last_answer=now)


@dataclass(frozen=True, slots=True)
class GateInputs:
    node: NodeStatus | None  # None: the poll failed or could not be made
    gate_on: bool  # the pod's gate condition as observed now
    leaving: bool  # marked `marketplace.p2p.dev/leaving` by the rollout
    fleet_peer_ids: AbstractSet[str] = frozenset()  # the other members' ids
    has_other_members: bool = False
    current_policy_version: int | None = None
    policy_required: bool = False


def decide(
    inp: GateInputs, memory: PollMemory, *, now: float, tolerance: Tolerance
) -> tuple[bool, PollMemory]:
    """The gate to set and the updated memory; pure (`now` is a monotonic reading)."""
    if inp.node is not None:
        remembered = PollMemory(pod_uid=memory.pod_uid, failures=0, last_answer=now)
        verdict = joined(
            inp.node,
            fleet_peer_ids=inp.fleet_peer_ids,
            has_other_members=inp.has_other_members,
            current_policy_version=inp.current_policy_version,
            policy_required=inp.policy_required,
        )
        return verdict and not inp.leaving, remembered
    failed = PollMemory(
        pod_uid=memory.pod_uid, failures=memory.failures + 1, last_answer=memory.last_answer
    )
    tolerated = (
        failed.failures < tolerance.failures and now - failed.last_answer < tolerance.silence
    )
    return inp.gate_on and tolerated and not inp.leaving, failed


def awaiting_join(pod: PodView | None) -> bool:
    """Poll this node at the start-up rate? Only while its container has started (it
    answers) and its joined gate is not on yet. Before the start there is nothing to ask,
    and the kubelet's status write of the start wakes the node's loop anyway: polling then
    would only re-run the reconcile of twenty starting nodes twice a second. Once the gate
    is on, the pod's Ready is the kubelet's to write (its event wakes the loop): polled
    twice a second meanwhile, a 1,000-node rollout on a busy machine made 19 polls per
    replaced node, 14 at 100 (issue 15). Nor a pod the fleet's rollout is taking out of
    service: its gate is off because it is leaving, not because it has yet to join, and
    the rollout asks it how its drain goes itself."""
    return (
        pod is not None
        and pod.phase == "Running"
        and pod.started
        and not pod.joined
        and not pod.ready
        and not pod.deleting
        and not pod.leaving
    )
