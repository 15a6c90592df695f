"""One MarketplaceNode's control loop: reconcile children, poll the node, gate, status.

`reconcile_once` is the single reconcile every trigger ends in (creation, spec change,
resume after a restart, a child's event, the periodic poll). It reads the observed
world from kopf's watch-fed indexes (`Views`), decides with the pure functions of
`reconcile/`, acts through `actuate`, and is the one writer of the node's status.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeGuard

from marketplace_protocol.admin import NodeStatus
from pydantic import ValidationError

from marketplace_operator import actuate, errors, events, k8s, nodeclient
from marketplace_operator.context import (
    REUSED_ANSWER_SECONDS,
    Answer,
    Context,
    NodeKey,
    PushedMembers,
)
from marketplace_operator.model.mnode import (
    MAX_CONNECTED_PEERS_LISTED,
    MarketplaceNodeStatus,
    Phase,
)
from marketplace_operator.model.tls import TlsSpec
from marketplace_operator.nodeclient import base_url
from marketplace_operator.policy.propagate import NodeTarget
from marketplace_operator.reconcile import fleet, gate, pacing, relocation, status, tls
from marketplace_operator.reconcile import node as plan
from marketplace_operator.reconcile.observe import PodView, pod_view
from marketplace_operator.render import names, pod

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.05
STATUS_PEERS_LISTED = 2 * MAX_CONNECTED_PEERS_LISTED
"""Peers a status poll asks the node to list (it counts all, its fleet's listed first):
enough for the gate (connected to a member?) and the status's list. Every peer of every
node was O(N^2) bytes per poll round: a third of the operator's CPU at 300 (issue 15)."""


@dataclass(frozen=True)
class Views:
    """The observed world around one node, as kopf's indexes hold it right now."""

    pod: dict[str, Any] | None = None
    service: dict[str, Any] | None = None
    pvc: dict[str, Any] | None = None
    identity: dict[str, Any] | None = None
    admin_secret: dict[str, Any] | None = None
    policy_configmap: dict[str, Any] | None = None
    fleet: tuple[fleet.MemberPod, ...] = ()
    peer_ids: Mapping[str, str] = field(default_factory=dict)  # member -> its peer id
    # The other members' peer ids: a view of the fleet's one set (`gate.OthersOf`).
    other_peer_ids: AbstractSet[str] = frozenset()
    current_policy_version: int | None = None
    fleet_uid: str | None = None  # the MarketplaceFleet's, once the operator has made it
    fleet_tls: TlsSpec = field(default_factory=TlsSpec)  # the MarketplaceFleet's spec.tls
    cert_manager: bool = False  # cert-manager's Certificate CRD is installed
    tls_ca: dict[str, Any] | None = None  # the fleet's CA Secret
    node_tls_secret: dict[str, Any] | None = None  # the node's certificate (operator CA)
    fleet_tls_secret: dict[str, Any] | None = None  # the fleet's certificate (cert-manager)
    entry_service: dict[str, Any] | None = None  # the fleet's `<fleet>-entry` Service

    def observed(
        self, binding_mode: str | None = None, tls_path: tls.Path | None = None
    ) -> plan.Observed:
        return plan.Observed(
            tls_ca=self.tls_ca,
            tls_secret=self.fleet_tls_secret
            if tls_path is tls.Path.CERT_MANAGER
            else self.node_tls_secret,
            fleet_uid=self.fleet_uid,
            binding_mode=binding_mode,
            pod=self.pod,
            service=self.service,
            pvc=self.pvc,
            identity=self.identity,
            admin_secret=self.admin_secret,
            policy_configmap=self.policy_configmap,
        )


@dataclass
class Outcome:
    phase: Phase | None = None
    # Only the node itself can say when it joined (no watch tells): poll it soon.
    joining: bool = False
    status_in: float | None = None  # a paced status write is due in this many seconds
    poll: str = "skipped"  # how the node's status was had (`Poll.how`), for the metrics
    recheck_in: float | None = None  # a NotReady Node's grace ends in this many seconds
    backoff: bool = False  # the API server refused what the spec asks for: retry slower


def desired_of(ctx: Context, body: Mapping[str, Any], views: Views | None = None) -> plan.Desired:
    """What the node should be, with its fleet's TLS as `views` has it (none: plain)."""
    meta = body["metadata"]
    fleet_name = str((body.get("spec") or {}).get("fleet") or "default")
    ref = names.NodeRef(
        name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], fleet=fleet_name
    )
    views = views or Views()
    mount = tls.mount_of(ref, views.fleet_tls, cert_manager=views.cert_manager)
    inputs = _inputs(ctx, body, mount)
    spec = inputs.spec
    chosen = tls_plan(views)
    return plan.Desired(ref=ref, spec=spec, pod_inputs=inputs, paused=spec.paused, tls=chosen)


def _inputs(ctx: Context, body: Mapping[str, Any], mount: names.TlsMount | None) -> pod.PodInputs:
    """The node's pod inputs, kept from pass to pass while its spec (its generation), its
    restart token and its TLS mount are the same: validating the spec and hashing the
    template at every pass were a twentieth of the operator's CPU in a rolling 1,000-node
    fleet (issue 15)."""
    meta = body["metadata"]
    generation = meta.get("generation")
    image = ctx.settings.default_node_image
    if generation is None:  # not from the API server (a test's body): nothing to key on
        return pod.inputs_of(body, default_image=image, tls=mount)
    key = (meta.get("uid"), generation, pod.restart_token(body), image, mount)
    state = ctx.node((meta["namespace"], meta["name"]))
    if state.inputs is None or state.inputs[0] != key:
        state.inputs = (key, pod.inputs_of(body, default_image=image, tls=mount))
    return state.inputs[1]


def tls_plan(views: Views) -> plan.TlsPlan | None:
    try:
        chosen = tls.path(views.fleet_tls, cert_manager=views.cert_manager)
    except tls.Unavailable:
        return None
    return plan.TlsPlan(chosen, views.fleet_tls.issuer_ref) if chosen is not None else None


def tls_refusal(views: Views) -> str | None:
    """Why the fleet's spec.tls cannot be served here (for the status), or None."""
    try:
        tls.path(views.fleet_tls, cert_manager=views.cert_manager)
    except tls.Unavailable as exc:
        return str(exc)
    return None


async def admin_token(ctx: Context, ref: names.NodeRef, secret: Mapping[str, Any] | None) -> str:
    """The fleet's admin token (`ctx.tokens` reads it once per version of the Secret)."""
    return await ctx.tokens.get(ref.namespace, ref.fleet, secret)


def token_reader(kube: k8s.Kube) -> Callable[[str, str], Awaitable[str | None]]:
    """How `AdminTokens` reads a fleet's Secret: one GET (the watch never holds Secret data)."""

    async def read(namespace: str, fleet: str) -> str | None:
        full = await kube.get(k8s.SECRETS, namespace, names.admin_secret_name(fleet))
        if full is None:
            return None
        return base64.b64decode(full["data"][names.ADMIN_TOKEN_KEY]).decode()

    return read


async def replace_pod(
    ctx: Context,
    body: Any,
    ref: names.NodeRef,
    current: PodView,
    *,
    drain_timeout: float,
    token: str | None,
    port: int,
    stopped: Callable[[], bool] = lambda: False,
) -> None:
    """Graceful replacement of one node's pod: drain, then delete it with its grace period.

    The next reconcile creates the new pod. Idempotent: after a crash the drain is simply
    asked for again. The rollout planner calls this for the step it decided.
    """
    if current.ip is not None and token is not None:
        try:
            done = await actuate.drain(
                ctx.nodes,
                base_url(current.ip, current.admin_port(port)),
                token,
                deadline_seconds=drain_timeout,
                poll=ctx.settings.drain_poll_seconds,
                stopped=stopped,
            )
            events.normal(
                body,
                events.Reason.DRAINED,
                f"pod {current.name} drained" if done else f"drain of {current.name} timed out",
            )
        except (errors.NodeUnreachable, errors.NodeRefused) as exc:
            events.warning(body, events.Reason.DRAIN_SKIPPED, f"{current.name}: {exc.message}")
    await ctx.kube.delete(
        k8s.PODS,
        ref.namespace,
        current.name,
        uid=current.uid,
        grace_seconds=int(drain_timeout) + pod.GRACE_MARGIN_SECONDS,
    )
    events.normal(body, events.Reason.REPLACED, f"deleted pod {current.name} for replacement")


def _previous_status(raw: Mapping[str, Any] | None) -> MarketplaceNodeStatus:
    try:
        return MarketplaceNodeStatus.model_validate(dict(raw or {}))
    except ValidationError:
        return MarketplaceNodeStatus()


def _status_patch(old: Mapping[str, Any] | None, new: MarketplaceNodeStatus) -> dict[str, Any]:
    """A merge patch from `old` to `new`; empty when nothing changed. Empty lists count
    as absent on both sides, and fields that are not ours are left alone."""
    wanted = {
        k: v
        for k, v in new.model_dump(mode="json", by_alias=True, exclude_none=True).items()
        if v != []
    }
    have = {k: v for k, v in (old or {}).items() if v is not None and v != []}
    patch: dict[str, Any] = {k: v for k, v in wanted.items() if have.get(k) != v}
    patch.update({k: None for k in have if k in _STATUS_FIELDS and k not in wanted})
    return patch


def _merged(old: Mapping[str, Any] | None, patch: Mapping[str, Any]) -> dict[str, Any]:
    """`old` with the merge patch `patch` applied (top-level fields: the patch's values
    replace the old ones whole, None removes)."""
    merged = {**(old or {}), **patch}
    return {k: v for k, v in merged.items() if v is not None}


# How long a pass trusts its own last write over a body or pod view that does not show it
# (`written_status`, `gate_written`): the write's watch event comes within seconds even on
# a busy API server; past this the object as watched is the truth again.
OWN_WRITE_TRUSTED_SECONDS = 30.0


def gate_written(
    pending: tuple[str, float, bool] | None, view: PodView | None, now: float
) -> bool | None:
    """The joined gate this operator last set on the pod (`pending`: pod uid, monotonic
    time set, the gate), while the pod's view (the index's copy of its last watch event)
    does not show it yet; None once it does, for another pod, or when it is too old
    (`OWN_WRITE_TRUSTED_SECONDS`). As with `written_status`: a pass in between saw the
    old gate and set the same gate again."""
    if pending is None or view is None:
        return None
    uid, at, joined = pending
    if view.uid != uid or view.joined == joined or now - at > OWN_WRITE_TRUSTED_SECONDS:
        return None
    return joined


def written_status(
    pending: tuple[float, dict[str, Any]] | None, status: Mapping[str, Any] | None, now: float
) -> dict[str, Any] | None:
    """The node's status with this operator's last patch (`pending`: monotonic time
    written, the patch) applied, while the node's body (its `status`) does not show that
    write yet; None once it does, or when the write is too old (`OWN_WRITE_TRUSTED_SECONDS`).

    The body shows a write only when its watch event arrives, seconds later on a busy API
    server, and other events of the node (the rollout's annotations) may come first. A
    pass in between decided from the older status, wrote the same change again and
    announced the same phase change a second time: at 1,000 nodes 1.4 "Ready ->
    Replacing" Events per replaced node (1.08 at 100), and an urgent write more (issue 15)."""
    if pending is None:
        return None
    at, patch = pending
    have = status or {}
    if now - at > OWN_WRITE_TRUSTED_SECONDS or all(have.get(k) == v for k, v in patch.items()):
        return None
    return _merged(have, patch)


_STATUS_FIELDS = frozenset(MarketplaceNodeStatus.model_json_schema(by_alias=True)["properties"])
_PEER_FIELDS = frozenset({"peers", "connectedPeers"})
_URGENT_FIELDS = frozenset({"phase", "observedGeneration", "policyVersion", "policyHash"})
PEERS_STATUS_INTERVAL_SECONDS = 5.0
DETAIL_STATUS_INTERVAL_SECONDS = 1.0


def _condition_states(conditions: Any) -> set[tuple[Any, Any]]:
    return {(c.get("type"), c.get("status")) for c in conditions or () if isinstance(c, Mapping)}


def patch_kind(patch: Mapping[str, Any], old: Mapping[str, Any] | None) -> str:
    """What a status patch carries, for its pacing and its count: "urgent" (what users and
    controllers wait on: the phase, a condition's status, the observed generation, the
    policy in force), "peers" (the peer count or list alone), else "detail"."""
    if not set(patch).isdisjoint(_URGENT_FIELDS):
        return "urgent"
    if "conditions" in patch and _condition_states(patch["conditions"]) != _condition_states(
        (old or {}).get("conditions")
    ):
        return "urgent"
    return "peers" if set(patch) <= _PEER_FIELDS else "detail"


def status_delay(
    patch: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    since_last_write: float | None,
    fleet_interval: float = 0.0,
) -> float | None:
    """Seconds until this status patch is due: None with nothing to write, 0 for now.

    What users and controllers wait on is written at once (`patch_kind` "urgent").
    Details (pod name and IP, peer id, messages) wait until
    `DETAIL_STATUS_INTERVAL_SECONDS` after the last write, and a peer count or list alone
    until `PEERS_STATUS_INTERVAL_SECONDS`: a starting node's details change half a dozen
    times in its first seconds, and each write is a watch event for every client of
    MarketplaceNodes (this operator included) on a busy API server. Either waits at least
    `fleet_interval` (`Context.write_interval`): the fleet's paced writes a second stay
    within a rate, as its polls do. On one machine a 1,000-node rollout takes 13 times
    one of 100, and a replaced node's details, written together with its urgent changes
    at 100, came apart: 2.6 detail writes per replaced node instead of 0.2 (issue 15).
    The caller comes back when the delay is over; the latest values go out then.
    """
    if not patch:
        return None
    kind = patch_kind(patch, old)
    if since_last_write is None or kind == "urgent":
        return 0.0
    base = PEERS_STATUS_INTERVAL_SECONDS if kind == "peers" else DETAIL_STATUS_INTERVAL_SECONDS
    return max(0.0, max(base, fleet_interval) - since_last_write)


def intent(body: Mapping[str, Any]) -> Hashable:
    """What of a MarketplaceNode its reconcile acts on besides its children: the spec (by
    generation), the annotations (a restart request) and deletion. An event that changes
    none of these, such as this operator's own status write, need not wake the node's
    loop: each wake is a pass, and a pass of a started node is an admin-API poll."""
    meta = body.get("metadata") or {}
    return (
        meta.get("generation"),
        meta.get("deletionTimestamp"),
        tuple(sorted((meta.get("annotations") or {}).items())),
    )


def announces_phase(previous: Phase | None, new: Phase | None) -> bool:
    """Is this phase change an Event? Every change but a new node's first phase, Pending:
    the Event of its children's creation already says it is being set up."""
    if new is None or new == previous:
        return False
    return not (previous is None and new is Phase.PENDING)


@dataclass(frozen=True)
class Poll:
    """What the node's admin API said: its status, or why there is none."""

    node: NodeStatus | None = None
    rejected: str | None = None  # the node refused the fleet's admin token (401)
    how: str = "asked"  # or "reused" (its answer of a moment ago), "skipped" (not asked)


SKIPPED = Poll(how="skipped")


async def _poll_node(
    ctx: Context, ref: names.NodeRef, view: PodView | None, port: int, token: str | None
) -> Poll:
    if view is None or view.ip is None or view.deleting or token is None:
        return SKIPPED
    if view.phase != "Running" or not view.started:
        return SKIPPED  # not answering yet; the pod event of its start wakes this loop
    try:
        base = base_url(view.ip, view.admin_port(port))
        node = await ctx.nodes.status(base, token, peers=STATUS_PEERS_LISTED)
    except errors.NodeRefused as exc:
        if exc.status == nodeclient.UNAUTHORIZED:
            log.warning(
                "%s/%s: the node refuses the fleet's admin token (its mounted %s differs): %s",
                ref.namespace, ref.name, names.admin_secret_name(ref.fleet), exc.message,
            )  # fmt: skip
            return Poll(rejected=exc.message)
        log.info("%s/%s: status poll refused: %s", ref.namespace, ref.name, exc.message)
        return Poll()
    except errors.NodeUnreachable as exc:
        log.debug("%s/%s: status poll failed: %s", ref.namespace, ref.name, exc)
        return Poll()
    # The policy worker's one source of the nodes' applied versions (`PolicyWorker.heard`).
    target = NodeTarget(ref.name, view.uid, base)
    ctx.policy_heard(ref.namespace, ref.fleet, target, node)
    return Poll(node=node)


def reusable(
    answer: Answer | None,
    view: PodView | None,
    now: float,
    within: float,
    policy: int | None = None,
) -> TypeGuard[Answer]:
    """May a pass use the node's last answer (`answer`) instead of asking again? Only an
    answer of this pod, at most `within` seconds old (monotonic `now`), while the pod
    still runs the started container that gave it (a restarted one is asked: it may not
    serve yet, and its process has forgotten what it was told),
    given while the fleet's policy was the current one (`policy`): an answer from before
    a policy change says the node is behind, and the gate would go off for it (reused
    for 5 s, that took serving nodes out right after a change, issue 15)."""
    return (
        answer is not None
        and view is not None
        and answer.pod_uid == view.uid
        and answer.restarts == view.restarts
        and view.phase == "Running"
        and view.started
        and not view.deleting
        and now - answer.at <= within
        and answer.policy == policy
    )


async def _poll_or_reuse(
    ctx: Context,
    ref: names.NodeRef,
    view: PodView | None,
    port: int,
    token: str | None,
    *,
    reuse_within: float,
    policy: int | None = None,
) -> Poll:
    """The node's status: its answer of less than `reuse_within` seconds ago, or a poll.

    Most passes of a replaced node are woken by its pod's events, and they come in bursts
    (the rollout marks the pod leaving, the gate goes off, the kubelet makes it unready;
    the new pod's gate goes on, the kubelet makes it Ready): each pass polled again, a
    second after the last answer, 17 polls per replaced node at 1,000 nodes (issue 15).
    Only answers are reused: an unanswered poll is asked again (the gate's hysteresis
    counts each failure once), and a clock-driven pass always asks; `policy`: the fleet's
    policy version now (`reusable`)."""
    key = (ref.namespace, ref.name)
    now = time.monotonic()
    answer = ctx.answers.get(key)
    if reusable(answer, view, now, reuse_within, policy):
        return Poll(node=answer.node, how="reused")
    poll = await _poll_node(ctx, ref, view, port, token)
    if poll.node is not None and view is not None:
        ctx.answers.put(key, Answer(view.uid, now, poll.node, policy, view.restarts))
    elif poll.how == "asked":
        # Unanswered: the last answer no longer stands for the node. Reused by the passes
        # of its pod's events (a hung node's readiness flips), it would tell the gate the
        # node answered, and the gate would not count this failure's silence.
        ctx.answers.drop(key)
    return poll


MEMBERS_UPDATES_PER_SECOND = 20.0
MEMBERS_MAX_SECONDS = 60.0


def members_pause(members: int) -> float:
    """How long a fleet of `members` waits between two updates of one copy of its member
    list (members.json, or a running node's pushed list): about 150 bytes a member each,
    and N copies per change of an N-member fleet, so at most `MEMBERS_UPDATES_PER_SECOND`
    copies a second on average, and at least every `MEMBERS_MAX_SECONDS`."""
    return min(MEMBERS_MAX_SECONDS, members / MEMBERS_UPDATES_PER_SECOND)


def members_file_due(written_at: float | None, now: float, members: int) -> bool:
    """May the fleet's leader write a changed members.json now (`now`, `written_at`:
    monotonic seconds of its last write, None: none by this operator yet)?

    Every write reaches every member's pod: each kubelet rewrites the ConfigMap's volume
    of each pod it runs, so a fleet of N pays N volume updates per write (a kubelet syncs
    a changed ConfigMap into pods about once a minute; ours at once). During a start or a
    rollout the list changes at every pass; written at each, 1,000 members were 1,000 file
    sets of 120 KB every few seconds. So `members_pause` (a minute is also a kubelet's
    sync period, beyond which a node could not see it sooner anyway). A running node
    loses little: its members are pushed to its admin API (`members_push_due`); the file
    serves nodes (re)starting."""
    return written_at is None or now - written_at >= members_pause(members)


ANNOUNCEMENT_FRESH_SECONDS = 1.0
ANNOUNCEMENT_EXACT_BELOW = 100


def announcement_fresh_for(members: int) -> float:
    """How old a fleet's announcement a pass may use without checking it: exact below
    `ANNOUNCEMENT_EXACT_BELOW` members, else `ANNOUNCEMENT_FRESH_SECONDS`.

    Checking it builds the fleet's projection, O(N) in Python, and in a rolling fleet the
    inputs differ at almost every pass: O(N^2) a poll round, a tenth of the operator's
    CPU in a 300-node rollout (py-spy, issue 15). A list a second old misses at most that
    second's changes, and it reaches a running node at `members_pause` anyway."""
    return 0.0 if members < ANNOUNCEMENT_EXACT_BELOW else ANNOUNCEMENT_FRESH_SECONDS


ADDRESS_COPIES_PER_SECOND = 5.0
ADDRESS_ENTRIES_PER_SECOND = 500.0


def addresses_pause(members: int) -> float:
    """How long a running node waits for a list in which only addresses moved (the same
    nodes and peer ids: a rollout): `members_pause`, or longer, so that the fleet's
    running nodes are sent at most `ADDRESS_COPIES_PER_SECOND` such lists and at most
    `ADDRESS_ENTRIES_PER_SECOND` member entries a second on average: N lists of N
    entries take N^2 / that (20 s at 100 members, as 5 lists a second do; 2,000 s at
    1,000). Counting lists instead left the bytes
    growing with N: in a 1,000-node rollout nearly every running node was re-sent its
    150 KB list once, 1,000 of the 2,000 member pushes (issue 15). Nothing waits on
    these lists: a running node meets a replaced member through that member (told of
    everyone at once, it greets them), its door admits it by its unchanged peer id, and
    its mounted members.json brings the new addresses within `members_pause` plus the
    kubelet's sync."""
    return max(
        members_pause(members),
        members / ADDRESS_COPIES_PER_SECOND,
        members * members / ADDRESS_ENTRIES_PER_SECOND,
    )


def members_push_due(
    pushed: PushedMembers | None,
    *,
    pod_uid: str,
    digest: str,
    others: int,
    now: float,
    members: int,
    same_roster: bool = False,
) -> bool:
    """Push the fleet's member list (`digest`, listing `others` other members) to this pod
    now? At once to a new pod, and to one that was told of no other member (it cannot
    join without one); a changed list to a pod that has one, at `members_pause`, or at
    `addresses_pause` when the fleet's nodes and peer ids are those it was told of
    (`same_roster`: only addresses moved). In a 1,000-node rollout the lists of addresses
    were a tenth of the operator's CPU and a third of the node farm's (issue 15).

    A rollout changes the list at every step, and each member's next pass re-pushed all
    of it: at 1,000 members, 150 KB to each of 1,000 nodes per change, the operator's
    memory growing by a half during the rollout and the nodes parsing 1,000 entries a
    pass (issue 15). A running node's list is a set of pinned bootstrap peers; it meets
    a replaced member sooner through that member, which was told of everyone at once."""
    if pushed is None or pushed.pod_uid != pod_uid:
        return True
    if pushed.digest == digest:
        return False
    if pushed.others == 0 and others > 0:
        return True
    pause = addresses_pause(members) if same_roster else members_pause(members)
    return now - pushed.at >= pause


async def _sync_members(
    ctx: Context,
    ref: names.NodeRef,
    views: Views,
    view: PodView | None,
    *,
    port: int,
    token: str | None,
) -> None:
    """Tell the node its fleet's members (once per change), and keep members.json current."""
    entry = fleet.entry_address(views.entry_service)
    key = ("members", ref.namespace, ref.fleet)
    current = ctx.fleets.get(
        key,
        (views.fleet, views.peer_ids, entry),
        lambda: fleet.announcement(views.fleet, views.peer_ids, entry, ctx.fleets.peek(key)),
        projection=lambda: fleet.announcement_inputs(views.fleet, views.peer_ids, entry),
        fresh_for=announcement_fresh_for(len(views.fleet)),
    )
    cm = views.policy_configmap
    written = (cm or {}).get("data") or {}
    state = ctx.node((ref.namespace, ref.name))
    now = time.monotonic()
    if (
        cm is not None
        and current.leader == ref.name
        and written.get(names.MEMBERS_KEY) != current.text
        and members_file_due(state.members_written, now, len(current.members))
    ):
        patch = {"data": {names.MEMBERS_KEY: current.text}}
        await ctx.kube.patch(k8s.CONFIGMAPS, ref.namespace, cm["metadata"]["name"], patch)
        state.members_written = now
    if view is None or view.ip is None or token is None or view.phase != "Running":
        return
    if not view.started:  # the node reads members.json first; push once it answers
        return
    others = current.others(ref.name)
    pushed = state.pushed_members
    if not members_push_due(
        pushed,
        pod_uid=view.uid,
        digest=current.digest,
        others=others,
        now=now,
        members=len(current.members),
        same_roster=pushed is not None and pushed.roster is views.peer_ids,
    ):
        return
    body = nodeclient.Encoded(current.push_body(ref.name), nodeclient.JSON_HEADERS)
    try:
        await ctx.nodes.put_members(base_url(view.ip, view.admin_port(port)), token, body)
    except (errors.NodeUnreachable, errors.NodeRefused):
        return  # not up yet; the next pass retries
    state.pushed_members = PushedMembers(view.uid, current.digest, now, others, views.peer_ids)


async def _set_gate(ctx: Context, ref: names.NodeRef, view: PodView, joined: bool) -> None:
    patch = pod.gate_patch(
        joined=joined,
        reason="Joined" if joined else "NotJoined",
        message="serving, connected to its fleet and on the current policy"
        if joined
        else "not yet connected to its fleet or not on the current policy",
        now=datetime.now(UTC),
    )
    with contextlib.suppress(errors.NotFound):  # the pod went away meanwhile
        await ctx.kube.patch(
            k8s.PODS, ref.namespace, view.name, patch, sub="status", content_type=k8s.STRATEGIC
        )


NODE_READ_TTL_SECONDS = 2.0


async def _kube_node(ctx: Context, name: str) -> relocation.NodeHealth:
    """A Kubernetes Node's health, read at most every `NODE_READ_TTL_SECONDS`: one read in
    flight per Node, awaited by every pass that asks meanwhile. Cached only once answered,
    the passes of a rollout's 64 unserving pods each sent their own GET whenever it
    expired: 4,000 GETs of 3 Nodes in a 1,000-node rollout (issue 15)."""
    now = time.monotonic()
    cached = ctx.kube_nodes.get(name)
    if cached is None or now - cached[0] >= NODE_READ_TTL_SECONDS:
        cached = (now, asyncio.ensure_future(ctx.kube.get(k8s.NODES, "", name)))
        ctx.kube_nodes[name] = cached
    try:
        node = await asyncio.shield(cached[1])  # one waiter cancelled leaves the read to all
    except Exception:
        if ctx.kube_nodes.get(name) is cached:  # a failed read is not kept
            del ctx.kube_nodes[name]
        raise
    return relocation.node_health(name, node)


async def relocate(
    ctx: Context, body: Mapping[str, Any], views: Views, desired: plan.Desired
) -> relocation.Verdict:
    """Look at the Nodes the node depends on (only when its pod is not serving) and carry
    out the relocation verdict (reconcile/relocation.py)."""
    view = pod_view(views.pod) if views.pod is not None else None
    pod_node = relocation.pods_node_to_check(view)
    claim_node = relocation.claims_node_to_check(view, views.pvc)
    if desired.paused or (pod_node is None and claim_node is None):
        return relocation.Verdict()
    verdict = relocation.decide(
        desired.spec.relocation,
        pod_node=await _kube_node(ctx, pod_node) if pod_node else None,
        claim_node_health=await _kube_node(ctx, claim_node) if claim_node else None,
        now=datetime.now(UTC),
    )
    ref, action = desired.ref, verdict.action
    if isinstance(action, relocation.ForceDeletePod) and view is not None:
        await ctx.kube.delete(k8s.PODS, ref.namespace, view.name, uid=view.uid, grace_seconds=0)
        events.warning(
            body, events.Reason.NODE_LOST,
            f"{action.why}: Node {action.node} has not been Ready for "
            f"{desired.spec.relocation.node_lost_grace_seconds}s: deleted pod {view.name} "
            "(its kubelet cannot confirm); it is replaced on a healthy Node",
        )  # fmt: skip
    elif isinstance(action, relocation.RelocateVolume) and views.pvc is not None:
        if view is not None:  # never scheduled: nothing ran
            await ctx.kube.delete(k8s.PODS, ref.namespace, view.name, uid=view.uid, grace_seconds=0)
        claim = views.pvc["metadata"]
        await ctx.kube.delete(k8s.PVCS, ref.namespace, claim["name"], uid=claim.get("uid"))
        events.normal(
            body, events.Reason.RELOCATING,
            f"{action.why}: the data volume is on Node {action.node}: a new one is made where "
            "the new pod runs; the node fills it again from its peers",
        )  # fmt: skip
    return verdict


async def reconcile_once(
    ctx: Context,
    body: Mapping[str, Any],
    views: Views,
    *,
    stopped: Callable[[], bool],
    reuse_within: float = 0.0,
) -> Outcome:
    """Bring one node's children in line, report on it, and say whether it is joining
    (`reuse_within`: how old an answer of the node its report may use; 0: ask)."""
    desired = desired_of(ctx, body, views)
    ref = desired.ref
    port = desired.spec.p2p.port
    conflicts: list[str] = []
    replacing: str | None = None
    moved = await relocate(ctx, body, views, desired)
    if moved.action is not None:
        # Acted on (or waiting for) an unavailable Node: the views are stale until the
        # deletions' watch events arrive, which wake this loop again.
        findings = Findings(replacing=moved.reason)
        outcome = await report_status(
            ctx, body, views, desired, findings, reuse_within=reuse_within
        )
        outcome.recheck_in = moved.recheck_in
        return outcome
    binding = await _binding_mode(ctx, views.pvc) if views.pod is None else None
    tls_path = desired.tls.path if desired.tls is not None else None
    actions = plan.plan(desired, views.observed(binding, tls_path), now=datetime.now(UTC))
    rejected = await _apply_concurrently(ctx, body, ref, [a for a in actions if _independent(a)])
    refusal = tls_refusal(views)
    if refusal is not None:
        rejected.append(f"tls: {refusal}")
    for action in actions:
        if _independent(action) or isinstance(action, plan.WaitForVolume):
            continue  # done above / the claim's own watch event wakes this loop
        if isinstance(action, plan.Conflict):
            conflicts.append(f"{action.kind}/{action.name}")
        elif isinstance(action, plan.ReplacePod):
            replacing = action.reason
            if views.pod is not None and ctx.may_replace(views.fleet, ref.name):
                await report_status(
                    ctx,
                    body,
                    views,
                    desired,
                    Findings(replacing=replacing),
                    reuse_within=reuse_within,
                )
                token = await _token_or_none(ctx, ref, views)
                events.normal(body, events.Reason.REPLACING, f"{action.reason}: replacing pod")
                await replace_pod(
                    ctx, body, ref, pod_view(views.pod),
                    drain_timeout=desired.spec.drain_timeout_seconds,
                    token=token, port=port, stopped=stopped,
                )  # fmt: skip
            else:
                replacing = "WaitingForFleetRollout"  # a Condition reason: CamelCase
        else:
            try:
                await _apply_logged(ctx, body, ref, action)
            except errors.KubeError as exc:
                if not refuses_spec(exc):
                    raise
                rejected.append(_rejection(action, exc))
    resized = any(
        isinstance(a, plan.Patch) and a.kind is plan.Kind.PVC and a.why == "resize" for a in actions
    ) and not any(r.startswith("pvc ") for r in rejected)
    findings = Findings(
        replacing=replacing or moved.reason,
        conflicts=tuple(conflicts),
        rejected=tuple(rejected),
        volume=plan.volume_mismatch(desired.spec, views.pvc, resized),
        node_unready=moved.node_unready,
    )
    outcome = await report_status(ctx, body, views, desired, findings, reuse_within=reuse_within)
    outcome.recheck_in = moved.recheck_in
    return outcome


def refuses_spec(exc: BaseException) -> bool:
    """Did the API server refuse what the spec asks for (invalid, or forbidden by policy
    such as a class without volume expansion), rather than fail? Retrying cannot help."""
    return isinstance(exc, errors.Invalid) or (
        isinstance(exc, errors.KubeError) and exc.status == HTTP_FORBIDDEN
    )


HTTP_FORBIDDEN = 403


def _rejection(action: plan.Action, exc: errors.KubeError) -> str:
    """What the API server refused, for the status: the child and its own message."""
    kind = getattr(action, "kind", "object")
    return f"{kind} {exc.message}"[:900]


async def _binding_mode(ctx: Context, claim: Mapping[str, Any] | None) -> str | None:
    """The claim's StorageClass `volumeBindingMode`, read once per class; None if unknown."""
    name = ((claim or {}).get("spec") or {}).get("storageClassName")
    if not name:
        return None
    if name not in ctx.binding_modes:
        try:
            sc = await ctx.kube.get(k8s.STORAGECLASSES, "", name)
        except errors.KubeError:  # e.g. not allowed to read classes: fall back to the grace
            sc = None
        ctx.binding_modes[name] = (sc or {}).get("volumeBindingMode")
    return ctx.binding_modes[name]


def _independent(action: plan.Action) -> bool:
    """Actions on the node's other children: they do not depend on each other."""
    if isinstance(action, plan.Create | plan.Patch):
        return action.kind is not plan.Kind.POD
    return isinstance(action, plan.CreateIdentity | plan.CreateAdminSecret | plan.CreateFleetCa)


async def _apply_logged(
    ctx: Context, body: Mapping[str, Any], ref: names.NodeRef, action: plan.Action
) -> None:
    done = await _apply_quietly(ctx, ref, action)
    if done:
        events.normal(body, events.Reason.CHANGED, done)


async def _apply_quietly(ctx: Context, ref: names.NodeRef, action: plan.Action) -> str | None:
    """Apply one action and log it; what was done, for the caller's Event (None for
    a patch that is bookkeeping)."""
    done = await actuate.apply(ctx.kube, ref, action)
    if done:
        log.info("%s/%s: %s", ref.namespace, ref.name, done)
    if isinstance(action, plan.Patch) and not action.announce:
        return None
    return done


async def _apply_concurrently(
    ctx: Context, body: Mapping[str, Any], ref: names.NodeRef, actions: list[plan.Action]
) -> list[str]:
    """Apply independent actions at once (each is one API call), then post one Event for
    all that was done (a new node's children would be five Events). What the API server
    refused as invalid is returned (the spec asks for what cannot be made: status, not a
    retry); any other error is re-raised."""
    results = await asyncio.gather(
        *(_apply_quietly(ctx, ref, a) for a in actions), return_exceptions=True
    )
    done = [r for r in results if isinstance(r, str)]
    if done:
        events.normal(body, events.Reason.CHANGED, "; ".join(done))
    rejected = []
    for action, result in zip(actions, results, strict=True):
        if isinstance(result, errors.KubeError) and refuses_spec(result):
            rejected.append(_rejection(action, result))
        elif isinstance(result, BaseException):
            raise result
    return rejected


async def _token_or_none(ctx: Context, ref: names.NodeRef, views: Views) -> str | None:
    try:
        return await admin_token(ctx, ref, views.admin_secret)
    except errors.NotFound:
        return None


@dataclass(frozen=True)
class Findings:
    """What the reconcile found besides the children's state, for the status."""

    replacing: str | None = None
    conflicts: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()  # what the API server refused to make of the spec
    volume: str | None = None  # how the data claim differs from the spec
    node_unready: str | None = None  # the pod's Node is NotReady (relocation.Verdict)


@dataclass(frozen=True)
class Decision:
    """One pass's verdict on a node, decided without I/O (`decide`); `write` carries it out."""

    status: MarketplaceNodeStatus
    patch: dict[str, Any]  # the status merge patch; empty when nothing changed
    delay: float | None  # when the patch is due (0: now; None: nothing to write)
    set_gate: bool | None = None  # the joined gate to set on the pod (None: leave it)
    memory: gate.PollMemory | None = None  # the pod's poll history after this pass
    event: tuple[bool, str] | None = None  # (warning, text) of a phase change to announce
    kind: str = "urgent"  # what the patch carries (`patch_kind`), for its count


def decide(
    body: Mapping[str, Any],
    views: Views,
    desired: plan.Desired,
    poll: Poll,
    findings: Findings,
    *,
    memory: gate.PollMemory | None,
    since_last_write: float | None,
    write_interval: float = 0.0,
    written: Mapping[str, Any] | None = None,
    gate_set: bool | None = None,
    now: float,
    wall: datetime,
    tolerance: gate.Tolerance,
    policy_required: bool,
) -> Decision:
    """The gate, the status and its Event for one pass, from what was observed: pure.
    `written` and `gate_set`: this operator's own writes that the node's body and its
    pod's view do not show yet (`written_status`, `gate_written`)."""
    ref = desired.ref
    view = pod_view(views.pod) if views.pod is not None else None
    if view is not None and gate_set is not None:
        view = replace(view, joined=gate_set)
    joined: bool | None = None
    if view is not None and view.ip is not None and not view.deleting:
        # Whether, not how many: the first other member with an address answers it. Counted
        # (a Python loop over the fleet) at every pass of every node, it was a tenth of the
        # operator's CPU while 1,000 nodes started (issue 15).
        others = any(m.pod.ip is not None and m.node != ref.name for m in views.fleet)
        if memory is None or memory.pod_uid != view.uid:
            memory = gate.PollMemory.fresh(view.uid, now)
        joined, memory = gate.decide(
            gate.GateInputs(
                node=poll.node,
                gate_on=view.joined,
                # A pod the fleet rollout is taking out of service keeps its gate off.
                leaving=view.leaving,
                fleet_peer_ids=views.other_peer_ids,
                has_other_members=others,
                current_policy_version=views.current_policy_version,
                policy_required=policy_required,
            ),
            memory,
            now=now,
            tolerance=tolerance,
        )
    raw_old = written if written is not None else body.get("status")
    previous = _previous_status(raw_old)
    identity_annotations = ((views.identity or {}).get("metadata") or {}).get("annotations") or {}
    new = status.build_status(
        previous,
        status.StatusInputs(
            generation=int(body["metadata"].get("generation", 0)),
            pod=view,
            desired_hash=pod.template_hash(desired.pod_inputs),
            node=poll.node,
            peer_id=identity_annotations.get(names.PEER_ID_ANNOTATION),
            paused=desired.paused,
            deleting=body["metadata"].get("deletionTimestamp") is not None,
            replacing=findings.replacing,
            conflicts=findings.conflicts,
            current_policy_version=views.current_policy_version,
            token_rejected=poll.rejected,
            rejected=findings.rejected,
            volume_mismatch=findings.volume,
            node_unready=findings.node_unready,
        ),
        now=wall,
    )
    patch = _status_patch(raw_old, new)
    event = None
    if announces_phase(previous.phase, new.phase):
        text = f"{previous.phase or 'New'} -> {new.phase}: {new.message or ''}"
        event = (new.phase is Phase.DEGRADED, text)
    return Decision(
        status=new,
        patch=patch,
        delay=status_delay(patch, raw_old, since_last_write, write_interval),
        kind=patch_kind(patch, raw_old),
        set_gate=None if view is None or joined is None or joined == view.joined else joined,
        memory=memory if joined is not None else None,
        event=event,
    )


async def report_status(
    ctx: Context,
    body: Mapping[str, Any],
    views: Views,
    desired: plan.Desired,
    findings: Findings = Findings(),
    *,
    reuse_within: float = 0.0,
) -> Outcome:
    """Poll the node (or reuse its answer of less than `reuse_within` seconds ago) and keep
    its members current (I/O), decide (pure), write (I/O)."""
    ref = desired.ref
    port = desired.spec.p2p.port
    view = pod_view(views.pod) if views.pod is not None else None
    token = await _token_or_none(ctx, ref, views)
    poll = await _poll_or_reuse(
        ctx, ref, view, port, token,
        reuse_within=reuse_within, policy=views.current_policy_version,
    )  # fmt: skip
    if not desired.paused:
        await _sync_members(ctx, ref, views, view, port=port, token=token)
    key = (ref.namespace, ref.name)
    now = time.monotonic()
    state = ctx.node(key)
    last = state.status_written
    written = written_status(state.written, body.get("status"), now)
    if written is None:
        state.written = None  # shown (or too old): the body is the truth
    gate_set = gate_written(state.gate, view, now)
    if gate_set is None:
        state.gate = None
    decision = decide(
        body, views, desired, poll, findings,
        memory=state.poll,
        since_last_write=None if last is None else now - last,
        write_interval=ctx.write_interval(),
        written=written,
        gate_set=gate_set,
        now=now,
        wall=datetime.now(UTC),
        tolerance=gate.Tolerance(
            failures=ctx.settings.gate_poll_failures,
            silence=pacing.silence_tolerated(
                ctx.settings.gate_silence_seconds,
                ctx.settings.gate_poll_failures,
                ctx.poll_interval(),
            ),
        ),
        policy_required=ctx.policy_required,
    )  # fmt: skip
    delay = await _write(ctx, body, ref, view, decision, now=now)
    return Outcome(
        phase=decision.status.phase,
        joining=gate.awaiting_join(view),
        status_in=delay,
        backoff=bool(findings.rejected),
        poll=poll.how,
    )


async def _write(
    ctx: Context,
    body: Mapping[str, Any],
    ref: names.NodeRef,
    view: PodView | None,
    decision: Decision,
    *,
    now: float,
) -> float | None:
    """Carry out a decision: the gate, the status patch (when due), the Event; the delay
    until a paced patch is due (None when nothing waits)."""
    key = (ref.namespace, ref.name)
    if decision.memory is not None:
        ctx.node(key).poll = decision.memory
    if decision.set_gate is not None and view is not None:
        await _set_gate(ctx, ref, view, decision.set_gate)
        ctx.node(key).gate = (view.uid, now, decision.set_gate)
    delay = decision.delay
    if delay == 0.0:
        await ctx.kube.patch(
            k8s.MNODES, ref.namespace, ref.name, {"status": decision.patch}, sub="status"
        )
        ctx.metrics.status_write(decision.kind)
        state = ctx.node(key)
        state.status_written = now
        # Over a write the body does not show yet: both are trusted until it shows both.
        earlier = state.written[1] if state.written is not None else {}
        state.written = (now, {**earlier, **decision.patch})
        delay = None
    if decision.event is not None:
        warning, text = decision.event
        if warning:
            events.warning(body, events.Reason.DEGRADED, text)
        else:
            events.normal(body, events.Reason.PHASE_CHANGED, text)
    if decision.status.phase is not None:
        ctx.node(key).phase = decision.status.phase
    return delay


MAX_BACKOFF_SECONDS = 300.0


def backoff(interval: float, failures: int) -> float:
    """The next pass's delay after `failures` failed or refused passes in a row: doubled
    each time up to `MAX_BACKOFF_SECONDS` (a spec change or a child's event still wakes the
    loop at once)."""
    if failures <= 0:
        return interval
    return float(min(MAX_BACKOFF_SECONDS, max(interval, 1.0) * 2 ** min(failures, 16)))


def _pause(
    ctx: Context, key: NodeKey, *, joining: bool, failures: int, due: float | None
) -> tuple[float, str]:
    """Seconds until the node's next pass unless a watch event wakes it (everything but the
    node's own progress arrives as one): its poll interval, joining or not, backed off
    after `failures`, jittered, and no later than a paced status write `due`; and what
    the clock's pass is for ("join", "resync" or "write": `metrics.PASS_TRIGGERS`)."""
    waited: float | None = None  # how long it has been joining (this pod)
    if joining:
        waited = time.monotonic() - ctx.joining.setdefault(key, time.monotonic())
    else:
        ctx.joining.pop(key, None)
    interval = backoff(ctx.poll_interval(joining=waited), failures)
    interval *= 1 + random.uniform(0, 0.1)  # noqa: S311 - jitter, not crypto
    if due is not None and due < interval:
        return due, "write"
    return interval, "join" if joining else "resync"


def unobserved(body: Mapping[str, Any]) -> bool:
    """Whether the node's status has not observed its generation yet: someone changed
    (or created) it and waits to see that seen, so its pass goes before routine ones
    (`turnstile`)."""
    observed = (body.get("status") or {}).get("observedGeneration")
    return observed is None or observed != body["metadata"].get("generation")


def reuse_for(trigger: str, held: float | None, event_reuse: float) -> float:
    """How old an answer of the node a pass begun by `trigger` may use instead of asking.

    A pass woken by watch events: one of `event_reuse` seconds (`Context.event_reuse`,
    issue 15). A pass that only comes to write a status held back `held` seconds
    (`status_delay`): the answer it was decided on; asking again made each paced write a
    poll, 2,500 of them in a 1,000-node rollout. Any other clock pass asks: it is how the
    node's own news (and its silence, which the gate counts) is heard. None outlives the
    answers kept (`Context.answers_kept`)."""
    if trigger == "event":
        return event_reuse
    if trigger == "write" and held is not None:
        return held + REUSED_ANSWER_SECONDS
    return 0.0


async def run(
    ctx: Context,
    body: Mapping[str, Any],
    views: Callable[[], Views],
    *,
    stopped: Callable[[], bool],
) -> None:
    """The node's loop until kopf stops it: reconcile, then sleep until woken or due."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    wake = ctx.wakeups.register(key)
    failures = 0  # consecutive passes that failed or were refused: the backoff's exponent
    reported: str | None = None  # the last ReconcileFailed message posted as an Event
    trigger = "start"  # what began the pass (`metrics.PASS_TRIGGERS`)
    held: float | None = None  # seconds the last pass held a status write back
    try:
        while not stopped():
            started = time.monotonic()
            outcome = "error"
            joining = False
            status_in: float | None = None
            try:
                # A turn first, then the views: a pass waiting for its turn holds
                # nothing. A spec change to a whole fleet starts every pass at once, and
                # each held its views, renderings and poll while it awaited (issue 15).
                urgent = unobserved(body)
                async with ctx.passes.turn(urgent=urgent):
                    ctx.metrics.turn_waited(urgent=urgent, seconds=time.monotonic() - started)
                    started = time.monotonic()  # the pass, not its wait for a turn
                    # What woke the loop while it waited for its turn is in the views it
                    # reads now: seen by this pass, not the cause of another (issue 15).
                    wake.clear()
                    result = await reconcile_once(
                        ctx,
                        body,
                        views(),
                        stopped=stopped,
                        reuse_within=reuse_for(trigger, held, ctx.event_reuse()),
                    )
                ctx.metrics.node_pass(trigger, result.poll)
                outcome, joining, status_in = "ok", result.joining, result.status_in
                if result.recheck_in is not None:  # a NotReady Node's grace: look again then
                    due = result.recheck_in + 0.5
                    status_in = due if status_in is None else min(status_in, due)
                failures = failures + 1 if result.backoff else 0
            except errors.OperatorError as exc:
                outcome = "retry" if exc.retriable else "error"
                failures += 1
                log.warning("%s/%s: reconcile failed: %s", *key, exc.message)
                if not exc.retriable and exc.message != reported:
                    events.warning(body, events.Reason.RECONCILE_FAILED, exc.message)
                    reported = exc.message
            finally:
                ctx.metrics.observe_reconcile(outcome, time.monotonic() - started)
            interval, trigger = _pause(ctx, key, joining=joining, failures=failures, due=status_in)
            held = status_in
            if await ctx.wakeups.sleep(wake, interval, debounce=DEBOUNCE_SECONDS):
                trigger = "event"
    finally:
        ctx.wakeups.unregister(key)
        ctx.joining.pop(key, None)
        state = ctx.node(key)
        state.phase = state.poll = state.status_written = state.intent = state.written = (
            state.gate
        ) = None
        state.members_written = state.inputs = None
        ctx.answers.drop(key)
        ctx.release(key)
