"""Where a node goes when its Kubernetes Node is drained, cordoned or lost: pure decisions.

A node's data claim lives on one Node (local volumes, bound by node affinity), so a pod
evicted by `kubectl drain` would come back Pending on the cordoned Node forever, and a
pod on a lost Node never finishes terminating. The operator therefore decides, per
`spec.relocation.whenNodeUnavailable`:

- `Relocate` (default): a pod on a Node that is NotReady for `nodeLostGraceSeconds` is
  deleted forcibly (its kubelet is gone: it can never confirm); a node whose pod is gone
  (or unscheduled) while its claim sits on a cordoned, lost or deleted Node gets a new
  claim, wherever the scheduler puts the new pod. The node keeps its identity (Secret)
  and fills its empty store again from its peers (gossip, replication repair).
- `WaitForNode`: nothing is deleted; the node waits for its Node to come back (as
  CloudNativePG's `nodeMaintenanceWindow.reusePVC`), reported on its status.

Cordoned but Ready is not lost: a running pod on a cordoned Node stays until the drain
evicts it (through the fleet's PodDisruptionBudget).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from marketplace_operator.model.mnode import RelocationSpec
from marketplace_operator.reconcile.observe import PodView

SELECTED_NODE = "volume.kubernetes.io/selected-node"
"""Written on a claim by the scheduler (WaitForFirstConsumer): the Node its volume is on."""


@dataclass(frozen=True)
class NodeHealth:
    """What matters of a Kubernetes Node here."""

    name: str
    exists: bool = True
    cordoned: bool = False
    ready: bool = True
    not_ready_since: datetime | None = None
    why: str = ""  # the Ready condition's reason and message when not Ready


def node_health(name: str, node: dict[str, Any] | None) -> NodeHealth:
    """Read a Node object (None: it does not exist)."""
    if node is None:
        return NodeHealth(name, exists=False, ready=False)
    ready = next(
        (c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
        None,
    )
    is_ready = ready is not None and ready.get("status") == "True"
    since, why = None, ""
    if ready is not None and not is_ready:
        if ready.get("lastTransitionTime"):
            stamp = str(ready["lastTransitionTime"]).replace("Z", "+00:00")
            since = datetime.fromisoformat(stamp)
        why = ": ".join(str(ready[k]) for k in ("reason", "message") if ready.get(k))
    return NodeHealth(
        name,
        cordoned=bool((node.get("spec") or {}).get("unschedulable")),
        ready=is_ready,
        not_ready_since=since,
        why=why,
    )


def claim_node(claim: dict[str, Any] | None) -> str | None:
    """The Node a claim's volume was made on, if the claim says (a live claim only)."""
    if claim is None or (claim.get("metadata") or {}).get("deletionTimestamp"):
        return None
    return ((claim.get("metadata") or {}).get("annotations") or {}).get(SELECTED_NODE)


@dataclass(frozen=True)
class ForceDeletePod:
    """The pod's Node is lost: delete the pod at once (its kubelet cannot confirm)."""

    node: str
    why: str


@dataclass(frozen=True)
class RelocateVolume:
    """The claim's Node is unavailable: delete the claim (and an unscheduled pod)."""

    node: str
    why: str


@dataclass(frozen=True)
class WaitForNode:
    """The user asked to wait for the Node (WaitForNode): report it, change nothing."""

    node: str
    why: str


Action = ForceDeletePod | RelocateVolume | WaitForNode
LOST = "NodeLost"
CORDONED = "NodeCordoned"
GONE = "NodeDeleted"
WAITING = "WaitingForNode"


@dataclass(frozen=True)
class Verdict:
    action: Action | None = None
    recheck_in: float | None = None  # seconds until a NotReady Node's grace ends
    # The pod's Node is NotReady and its grace runs: what the status says meanwhile (the
    # pod's state is unknown; during a rollout it read "Replacing", which hid the fault).
    node_unready: str | None = None

    @property
    def reason(self) -> str | None:
        """The status's CamelCase reason for what is going on, if anything."""
        if isinstance(self.action, WaitForNode):
            return WAITING
        return self.action.why if self.action is not None else None


def _lost(node: NodeHealth, grace: timedelta, now: datetime) -> tuple[str | None, float | None]:
    """(why the Node counts as lost, None) or (None, seconds until it would)."""
    if not node.exists:
        return GONE, None
    if node.ready:
        return None, None
    left = grace - (now - (node.not_ready_since or now))
    if left <= timedelta(0):
        return LOST, None
    return None, left.total_seconds()


def _unready(node: NodeHealth, spec: RelocationSpec) -> str:
    """The status's word for a pod whose Node is NotReady within its grace. Fixed while the
    grace runs (no countdown): a changing message would be a status write every pass."""
    then = (
        "the node waits for it (whenNodeUnavailable: WaitForNode)"
        if spec.when_node_unavailable == "WaitForNode"
        else f"after {spec.node_lost_grace_seconds} s NotReady the pod is deleted and the "
        "node relocated"
    )
    return (
        f"the pod's Node {node.name} is not Ready ({node.why or 'no reason given'}): the "
        f"pod's state is unknown and it is out of service; {then}"
    )


def pods_node_to_check(pod: PodView | None) -> str | None:
    """The Node to read for the pod: only a scheduled pod that is not serving (a lost
    Node's pods are marked not Ready by the node lifecycle controller)."""
    if pod is None or pod.node_name is None or (pod.ready and not pod.deleting):
        return None
    return pod.node_name


def claims_node_to_check(pod: PodView | None, claim: dict[str, Any] | None) -> str | None:
    """The Node to read for the claim: only while no pod runs from it."""
    if pod is not None and (pod.node_name is not None or pod.deleting):
        return None
    return claim_node(claim)


def decide(
    spec: RelocationSpec,
    *,
    pod_node: NodeHealth | None,
    claim_node_health: NodeHealth | None,
    now: datetime,
) -> Verdict:
    """What to do about the Node(s) a node depends on (pure). `pod_node` and
    `claim_node_health` are given only when `pods_node_to_check` and
    `claims_node_to_check` name a Node."""
    grace = timedelta(seconds=spec.node_lost_grace_seconds)
    wait = spec.when_node_unavailable == "WaitForNode"
    if pod_node is not None:
        why, left = _lost(pod_node, grace, now)
        if why is None:
            unready = None if pod_node.ready else _unready(pod_node, spec)
            return Verdict(recheck_in=left, node_unready=unready)
        message = f"{why}: {pod_node.name}"
        return Verdict(
            WaitForNode(pod_node.name, message) if wait else ForceDeletePod(pod_node.name, why)
        )
    if claim_node_health is not None:
        node = claim_node_health
        why, left = _lost(node, grace, now)
        if why is None and node.cordoned:
            why = CORDONED
        if why is None:
            return Verdict(recheck_in=left)
        return Verdict(
            WaitForNode(node.name, f"{why}: {node.name}")
            if wait
            else RelocateVolume(node.name, why)
        )
    return Verdict()
