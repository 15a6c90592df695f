"""The whole MarketplaceNode status from what was observed: one pure function, one writer.

`build_status` derives phase and the four conditions from the pod, the node's own admin
status and the reconcile's findings; `joined` decides the pod's readiness gate. The
handler patches status only when the result differs from what is stored.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime

from marketplace_protocol.admin import NodeStatus

from marketplace_operator.model.common import Condition, ConditionStatus, merge_condition, rfc3339
from marketplace_operator.model.mnode import (
    MAX_CONNECTED_PEERS_LISTED,
    ConditionType,
    MarketplaceNodeStatus,
    Phase,
)
from marketplace_operator.reconcile.observe import PodView


def joined(
    node: NodeStatus | None,
    *,
    fleet_peer_ids: AbstractSet[str],
    has_other_members: bool,
    current_policy_version: int | None,
    policy_required: bool = False,
) -> bool:
    """The `marketplace.p2p.dev/joined` gate: serving, connected to its fleet, on the policy.

    With other members in the fleet the node must be connected to at least one of them
    (by peer id when their ids are known, else to anyone); alone it only needs to serve.
    With fleet policy run by this operator (`policy_required`), a node that has no policy
    yet is not joined even before the fleet ConfigMap names a version: Ready never comes
    before PolicyApplied.

    `fleet_peer_ids` are the other members' ids, as a set: each pass of every node asks
    this, so it costs the peers the node listed, not the fleet's size (issue 15).
    """
    if node is None or not node.ready or node.draining:
        return False
    if policy_required and node.policy_version is None:
        return False
    if current_policy_version is not None and (
        node.policy_version is None or node.policy_version < current_policy_version
    ):
        return False
    if not has_other_members:
        return True
    if len(fleet_peer_ids) > (node.peer_id in fleet_peer_ids):  # someone's id but its own
        return any(p.peer_id in fleet_peer_ids and p.peer_id != node.peer_id for p in node.peers)
    return bool(node.peers)


@dataclass(frozen=True)
class StatusInputs:
    generation: int
    pod: PodView | None
    desired_hash: str
    node: NodeStatus | None = None
    peer_id: str | None = None  # from the identity Secret, known before the node answers
    paused: bool = False
    deleting: bool = False
    replacing: str | None = None  # why a replacement is in progress or waiting
    conflicts: tuple[str, ...] = ()
    current_policy_version: int | None = None
    token_rejected: str | None = None  # the node answered 401 to the fleet's admin token
    rejected: tuple[str, ...] = ()  # what the API server refused to make of the spec
    volume_mismatch: str | None = None  # how the data claim differs from the spec
    # The pod's Kubernetes Node is NotReady (its kubelet silent): the status message saying
    # so (reconcile/relocation.py); the pod's own conditions are then stale.
    node_unready: str | None = None


SPEC_REJECTED = "SpecRejected"
IDENTITY_CHANGED = "IdentityChanged"
VOLUME_MISMATCH = "VolumeMismatch"
UNSCHEDULABLE = "Unschedulable"  # the scheduler finds no Node for the pod (it keeps trying)
TOKEN_REJECTED = "AdminTokenRejected"  # noqa: S105 - a Condition reason
STORAGE_FULL = "StorageFull"  # the node reports its data volume full
CLOCK_SKEWED = "ClockSkewed"  # the node's peers place its wall clock far off
NODE_NOT_READY = "NodeNotReady"  # the pod's Kubernetes Node is NotReady: the pod's fate unknown


@dataclass(frozen=True)
class _Verdict:
    phase: Phase
    message: str
    ready: tuple[ConditionStatus, str]
    progressing: tuple[ConditionStatus, str]
    degraded: tuple[ConditionStatus, str]


def _verdict(inp: StatusInputs, previous: Phase | None = None) -> _Verdict:
    pod = inp.pod
    stuck = pod.stuck_reason if pod is not None else None
    not_ready = ConditionStatus.FALSE
    if inp.deleting:
        return _Verdict(
            Phase.TERMINATING, "draining before deletion", (not_ready, "Terminating"),
            (ConditionStatus.TRUE, "Terminating"), (ConditionStatus.FALSE, "AsExpected"),
        )  # fmt: skip
    if inp.conflicts:
        message = "objects owned by someone else: " + ", ".join(inp.conflicts)
        return _Verdict(
            Phase.DEGRADED, message, (not_ready, "OwnershipConflict"),
            (ConditionStatus.FALSE, "Blocked"), (ConditionStatus.TRUE, "OwnershipConflict"),
        )  # fmt: skip
    if inp.rejected:
        message = "the API server refuses what the spec asks for: " + "; ".join(inp.rejected)
        return _Verdict(
            Phase.DEGRADED, message[:1024], (not_ready, SPEC_REJECTED),
            (ConditionStatus.FALSE, "Blocked"), (ConditionStatus.TRUE, SPEC_REJECTED),
        )  # fmt: skip
    running_id = inp.node.peer_id if inp.node is not None else None
    if running_id and inp.peer_id and running_id != inp.peer_id and not inp.paused:
        message = (
            f"the pod runs as peer {running_id}, but the identity Secret now holds "
            f"{inp.peer_id} (it was deleted and a new key made): restart the node to take "
            "the new identity (annotate marketplace.p2p.dev/restartedAt)"
        )
        return _Verdict(
            Phase.DEGRADED, message, (not_ready, IDENTITY_CHANGED),
            (ConditionStatus.FALSE, "Blocked"), (ConditionStatus.TRUE, IDENTITY_CHANGED),
        )  # fmt: skip
    if inp.volume_mismatch is not None:
        return _Verdict(
            Phase.DEGRADED, inp.volume_mismatch[:1024], (not_ready, VOLUME_MISMATCH),
            (ConditionStatus.FALSE, "Blocked"), (ConditionStatus.TRUE, VOLUME_MISMATCH),
        )  # fmt: skip
    if stuck is not None and pod is not None:
        message = f"node container: {stuck}" + (
            f": {pod.waiting_message}" if pod.waiting_message else ""
        )
        return _Verdict(
            Phase.DEGRADED, message[:1024], (not_ready, stuck),
            (ConditionStatus.FALSE, "Blocked"), (ConditionStatus.TRUE, stuck),
        )  # fmt: skip
    if (
        pod is not None
        and pod.unschedulable is not None
        and not pod.deleting
        and not (
            inp.replacing  # a relocation deals with it (or waits for the Node, as asked)
        )
    ):
        message = f"the scheduler cannot place the pod: {pod.unschedulable}"
        return _Verdict(
            Phase.DEGRADED, message[:1024], (not_ready, UNSCHEDULABLE),
            (ConditionStatus.TRUE, UNSCHEDULABLE), (ConditionStatus.TRUE, UNSCHEDULABLE),
        )  # fmt: skip
    ready_now = pod is not None and pod.ready and not pod.deleting
    ready = (ConditionStatus.TRUE, "Joined") if ready_now else (not_ready, _not_ready_reason(pod))
    if inp.token_rejected is not None and not inp.paused:
        message = (
            "the node refuses the fleet's admin token (its mounted Secret differs from the "
            f"operator's; see docs/operator.md, token rotation): {inp.token_rejected}"
        )
        reason = ready if ready_now else (not_ready, TOKEN_REJECTED)
        return _Verdict(
            Phase.DEGRADED, message[:1024], reason,
            (ConditionStatus.FALSE, "Blocked"), (ConditionStatus.TRUE, TOKEN_REJECTED),
        )  # fmt: skip
    if inp.paused:
        return _Verdict(
            Phase.PAUSED, "reconciliation paused by spec.paused", ready,
            (ConditionStatus.FALSE, "Paused"), (ConditionStatus.FALSE, "AsExpected"),
        )  # fmt: skip
    replacing = inp.replacing or ("PodTerminating" if pod is not None and pod.deleting else None)
    if inp.node_unready is not None:  # a rollout step on the pod must not hide it either
        progressing = (
            (ConditionStatus.TRUE, replacing) if replacing else (ConditionStatus.FALSE, "Stable")
        )
        return _Verdict(
            Phase.DEGRADED, inp.node_unready[:1024], (not_ready, NODE_NOT_READY), progressing,
            (ConditionStatus.TRUE, NODE_NOT_READY),
        )  # fmt: skip
    trouble = _node_trouble(inp.node)
    if trouble is not None:  # before a replacement under way: a rollout must not hide it
        why, message = trouble
        progressing = (
            (ConditionStatus.TRUE, replacing) if replacing else (ConditionStatus.FALSE, "Stable")
        )
        return _Verdict(
            Phase.DEGRADED, message, ready, progressing, (ConditionStatus.TRUE, why),
        )  # fmt: skip
    if replacing is not None:
        why = replacing
        return _Verdict(
            Phase.REPLACING, f"replacing the pod: {why}", ready,
            (ConditionStatus.TRUE, why), (ConditionStatus.FALSE, "AsExpected"),
        )  # fmt: skip
    if ready_now:
        return _Verdict(
            Phase.READY, "serving and joined", ready,
            (ConditionStatus.FALSE, "Stable"), (ConditionStatus.FALSE, "AsExpected"),
        )  # fmt: skip
    if previous in (Phase.READY, Phase.DEGRADED) and pod is not None and pod.phase == "Running":
        # It served and stopped (a hung or partitioned process, lost peers), with no
        # replacement under way: not a start. The chaos suite's SIGSTOP read "Starting".
        return _Verdict(
            Phase.DEGRADED, f"the node stopped serving: {ready[1]}", ready,
            (ConditionStatus.FALSE, "Stable"), (ConditionStatus.TRUE, ready[1]),
        )  # fmt: skip
    phase = Phase.PENDING if pod is None or pod.phase == "Pending" else Phase.STARTING
    return _Verdict(
        phase, f"waiting: {ready[1]}", ready,
        (ConditionStatus.TRUE, ready[1]), (ConditionStatus.FALSE, "AsExpected"),
    )  # fmt: skip


def _node_trouble(node: NodeStatus | None) -> tuple[str, str] | None:
    """What the node reports wrong with its own machine, as (reason, message): it still
    serves (Ready is the pod's word), but not fully (docs/operator.md, "The chaos suite")."""
    if node is None:
        return None
    if node.storage_full:
        return STORAGE_FULL, (
            "the node's data volume is full: it refuses publishes and copies (507 "
            "storage_full) and serves reads; free space or grow spec.storage.size"
        )
    if node.clock_offset_seconds:
        return CLOCK_SKEWED, (
            f"the node's wall clock is {node.clock_offset_seconds:+d} s off from its peers': "
            "they refuse its signed requests (stale_request) and it answers timestamp checks "
            "503 clock_skewed; fix the time service of its Kubernetes Node"
        )
    return None


def _not_ready_reason(pod: PodView | None) -> str:
    if pod is None:
        return "PodMissing"
    if pod.phase == "Pending":
        return "PodPending"
    if not pod.containers_ready:
        return "NodeNotServing"
    if not pod.joined:
        return "NotJoined"
    return "PodNotReady"


def _policy_condition(inp: StatusInputs) -> tuple[ConditionStatus, str, str]:
    applied = inp.node.policy_version if inp.node is not None else None
    want = inp.current_policy_version
    if applied is None:
        return ConditionStatus.UNKNOWN, "NotReported", "the node has not reported a policy"
    if want is None or applied >= want:
        return ConditionStatus.TRUE, "UpToDate", f"policy version {applied} applied"
    return ConditionStatus.FALSE, "Behind", f"applied {applied}, current {want}"


def build_status(
    previous: MarketplaceNodeStatus, inp: StatusInputs, *, now: datetime
) -> MarketplaceNodeStatus:
    """The status to store. Condition transition times move only when a status flips."""
    verdict = _verdict(inp, previous.phase)
    stamp = rfc3339(now)

    def cond(type_: ConditionType, status: ConditionStatus, reason: str, msg: str) -> Condition:
        return Condition(
            type=type_, status=status, reason=reason, message=msg[:4096],
            last_transition_time=stamp, observed_generation=inp.generation,
        )  # fmt: skip

    conditions = list(previous.conditions)
    policy = _policy_condition(inp)
    for new in (
        cond(ConditionType.READY, *verdict.ready, verdict.message),
        cond(ConditionType.PROGRESSING, *verdict.progressing, verdict.message),
        cond(ConditionType.DEGRADED, *verdict.degraded, verdict.message),
        cond(ConditionType.POLICY_APPLIED, *policy),
    ):
        conditions = merge_condition(conditions, new)
    node = inp.node
    pod = inp.pod
    peers = sorted(p.peer_id for p in node.peers) if node is not None else []
    return MarketplaceNodeStatus(
        phase=verdict.phase,
        message=verdict.message[:1024],
        observed_generation=inp.generation,
        peer_id=(node.peer_id if node is not None else None) or inp.peer_id or previous.peer_id,
        pod_name=pod.name if pod is not None else None,
        pod_ip=pod.ip if pod is not None else None,
        peers=node.all_peers if node is not None else previous.peers,
        connected_peers=peers[:MAX_CONNECTED_PEERS_LISTED] if node is not None
        else previous.connected_peers,
        policy_version=node.policy_version if node is not None else previous.policy_version,
        policy_hash=(node.policy_hash or None) if node is not None else previous.policy_hash,
        pod_template_hash=pod.template_hash if pod is not None else None,
        under_replicated=node.under_replicated if node is not None
        else previous.under_replicated,
        conditions=conditions,
    )  # fmt: skip
