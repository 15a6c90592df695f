"""kopf wiring of the fleet rollout: one loop per MarketplaceFleet — observe, plan, record, act.

Each pass reads the fleet object (settings, pause, the rollout's record) from the API,
its MarketplaceNodes and pods from kopf's watch-fed indexes, and each draining node's
drain state from its admin API; `rollout.planner.plan` decides; the decision's record
is written to the fleet's status *before* its actions are carried out, so an operator
killed at any moment resumes from the record and never has two steps where it decided
one. Pods are deleted with a uid precondition, so a stale decision cannot touch a newer
pod. The node reconcile (handlers/mnode.py) creates every replacement pod; its gate
(`rollout.gate.may_replace`) leaves replacing stale pods to this loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
from marketplace_protocol.admin import DrainState

from marketplace_operator import actuate, errors, events, k8s, nodeloop
from marketplace_operator.context import Context
from marketplace_operator.model.common import API_VERSION, GROUP, VERSION, rfc3339
from marketplace_operator.model.fleet import KIND as FLEET_KIND
from marketplace_operator.model.fleet import (
    LEAVING_ANNOTATION,
    ExposureSpec,
    RolloutPhase,
    StepPhase,
)
from marketplace_operator.model.fleet import PLURAL as FLEET_PLURAL
from marketplace_operator.model.mnode import DEFAULT_FLEET, MarketplaceNodeSpec
from marketplace_operator.model.mnode import KIND as MNODE_KIND
from marketplace_operator.model.mnode import PLURAL as MNODE_PLURAL
from marketplace_operator.model.tls import CERTIFICATE_CRD, TlsSpec
from marketplace_operator.nodeclient import base_url
from marketplace_operator.reconcile import node as plan
from marketplace_operator.reconcile import shared
from marketplace_operator.reconcile import tls as reconcile_tls
from marketplace_operator.reconcile.observe import pod_view
from marketplace_operator.render import entry, names, pdb, pod
from marketplace_operator.rollout import planner, status, triggers
from marketplace_operator.rollout.observation import Drain, FleetView, NodeView

log = logging.getLogger(__name__)

IDLE_SECONDS = 10.0
WAKE_DEBOUNCE_SECONDS = 0.2
NODES_PER_DEBOUNCE_SECOND = 2_000.0


def wake_debounce(nodes: int) -> float:
    """How long the fleet's loop gathers wake-ups before a pass: `WAKE_DEBOUNCE_SECONDS`,
    or a second per `NODES_PER_DEBOUNCE_SECOND` nodes. A pass reads every node of the
    fleet, and a rolling fleet's pod events wake it all the time: at a fixed pace its
    cost per second grew with the fleet (0.5 s at 1,000 nodes, where a step takes half a
    minute on one machine; issue 15)."""
    return max(WAKE_DEBOUNCE_SECONDS, nodes / NODES_PER_DEBOUNCE_SECOND)


SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # on a Service's EndpointSlices
_DRAIN = {
    DrainState.SERVING: Drain.SERVING,
    DrainState.DRAINING: Drain.DRAINING,
    DrainState.DRAINED: Drain.DRAINED,
}


def _key(namespace: str, fleet: str) -> tuple[str, str]:
    """The fleet loop's wake-up key; `/` cannot occur in a node name, so keys never clash."""
    return (namespace, f"{FLEET_PLURAL}/{fleet}")


# --- indexes ----------------------------------------------------------------------------


@kopf.index(GROUP, VERSION, MNODE_PLURAL)
async def rollout_mnodes(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, Any]:
    """MarketplaceNodes by (namespace, fleet): what each should run."""
    raw = dict(body)  # kopf's views resolve every lookup; what they hold is plain dicts
    meta = raw.get("metadata") or {}
    spec = dict(raw.get("spec") or {})
    status = raw.get("status") or {}
    slim = {
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "annotations", "deletionTimestamp")
            if meta.get(k) is not None
        },
        "spec": spec,
        # membership, for the planner's "would it un-join someone" check; the packages the
        # node reports below the replication factor, for the fleet's status
        "status": {
            k: status[k]
            for k in ("peerId", "connectedPeers", "peers", "underReplicated")
            if status.get(k) is not None
        },
    }
    return {(namespace, spec.get("fleet") or DEFAULT_FLEET): slim}


@kopf.index(GROUP, VERSION, FLEET_PLURAL)
async def rollout_fleets(
    namespace: str | None, name: str, uid: str | None, **_: Any
) -> dict[Any, Any]:
    """Each MarketplaceFleet's uid: the owner its nodes give the fleet's shared objects."""
    return {(namespace, name): uid}


# --- wake-ups and fleet objects ---------------------------------------------------------


def pod_changed(ctx: Context, namespace: str, fleet: str) -> None:
    """A pod of the fleet changed (readiness, deletion): re-plan now, not at the next tick."""
    ctx.wakeups.wake(_key(namespace, fleet))


async def mnode_changed(
    ctx: Context, namespace: str, body: kopf.Body, fleets: kopf.Index[Any, Any], *, gone: bool
) -> None:
    """A node of the fleet changed: re-plan; and every fleet with a node gets a
    MarketplaceFleet (all defaults) to hold its rollout's record."""
    fleet = str((body.get("spec") or {}).get("fleet") or DEFAULT_FLEET)
    ctx.wakeups.wake(_key(namespace, fleet))
    if gone or (namespace, fleet) in fleets:
        return
    created = {
        "apiVersion": API_VERSION,
        "kind": FLEET_KIND,
        "metadata": {"name": fleet, "namespace": namespace, "labels": dict(names.MANAGED)},
        "spec": {},
    }
    try:
        await ctx.kube.create(k8s.FLEETS, created)
    except errors.OperatorError as exc:
        log.warning("%s: cannot create MarketplaceFleet %s: %s", namespace, fleet, exc.message)


# --- the fleet's loop -------------------------------------------------------------------


@kopf.daemon(GROUP, VERSION, FLEET_PLURAL, cancellation_timeout=1.0)
async def rollout_loop(
    stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **kwargs: Any
) -> None:
    ctx: Context = memo.ctx
    namespace, fleet = body["metadata"]["namespace"], body["metadata"]["name"]
    wake = ctx.wakeups.register(_key(namespace, fleet), node=False)
    ensured_pdb: pdb.Budget | None = None
    ensured_entry: ExposureSpec | None = None
    known: ViewCache = {}  # the nodes' views, kept from pass to pass
    adopted = False  # the Issuer and Certificate (not watched) are read once, for an upgrade
    try:
        while not stopped:
            busy = False
            try:
                busy, budget, exposure = await run_once(ctx, namespace, fleet, kwargs, known)
                if budget is not None and budget != ensured_pdb:  # members or maxUnavailable
                    await ensure_pdb(ctx, namespace, fleet, budget)
                    ensured_pdb = budget
                if exposure is not None and exposure != ensured_entry:
                    await ensure_entry(ctx, namespace, fleet, exposure)
                    ensured_entry = exposure
                await ensure_owners(ctx, body, kwargs, unwatched=not adopted)
                adopted = True
            except errors.OperatorError as exc:
                log.warning("fleet %s/%s: rollout pass failed: %s", namespace, fleet, exc.message)
            interval = ctx.settings.rollout_interval_seconds if busy else IDLE_SECONDS
            # Twenty nodes starting wake the fleet a hundred times; each pass reads the
            # fleet and may write its status and PDB.
            await ctx.wakeups.sleep(wake, interval, debounce=wake_debounce(len(known)))
    finally:
        ctx.wakeups.unregister(_key(namespace, fleet))


ViewCache = dict[str, tuple[object, object, object, NodeView]]
"""A node's view by name, with what it was made from (`_Pass.node_view`): the indexed
MarketplaceNode and pod (each watch event indexes new ones), and the rest."""


@dataclass(frozen=True)
class _Pass:
    """What one pass over a fleet works with: the context and the indexed observation."""

    ctx: Context
    namespace: str
    fleet: str
    indexes: Mapping[str, Any]
    mnodes: Mapping[str, dict[str, Any]]  # by name
    pods: Mapping[str, dict[str, Any] | None]  # by node name
    # Views of earlier passes: a pass while a 1,000-node fleet rolls re-made every node's
    # view (its pod parsed, its revision hashed) four times a second, and few had changed.
    known: ViewCache = field(default_factory=dict)

    @classmethod
    def gather(
        cls,
        ctx: Context,
        namespace: str,
        fleet: str,
        indexes: Mapping[str, Any],
        known: ViewCache,
    ) -> _Pass:
        mnodes = {
            m["metadata"]["name"]: m
            for m in indexes["rollout_mnodes"].get((namespace, fleet)) or ()
        }
        pods = {n: _one(indexes["mnode_pods"], (namespace, names.pod_name(n))) for n in mnodes}
        for gone in [n for n in known if n not in mnodes]:
            del known[gone]
        return cls(ctx, namespace, fleet, indexes, dict(sorted(mnodes.items())), pods, known)

    def address(self, node: str) -> str | None:
        """The base URL of the node's admin API (None while its pod has no address)."""
        view = pod_view(self.pods.get(node) or {})
        spec = MarketplaceNodeSpec.model_validate(self.mnodes[node].get("spec") or {})
        return base_url(view.ip, view.admin_port(spec.p2p.port)) if view.ip else None

    async def token(self) -> str | None:
        ref = names.NodeRef(name="", namespace=self.namespace, uid="", fleet=self.fleet)
        secret = _one(
            self.indexes["mnode_secrets"], (self.namespace, names.admin_secret_name(self.fleet))
        )
        try:
            return await nodeloop.admin_token(self.ctx, ref, secret)
        except errors.KubeError:
            return None

    async def drain_states(self, wanted: set[str]) -> dict[str, Drain]:
        """Drain states of the nodes being drained (only those: hundreds of nodes stay cheap),
        asked all at once: a step of 64 nodes asked one by one was 64 round trips a pass."""
        token = await self.token() if wanted else None
        if token is None:
            return {}

        async def one(node: str) -> Drain | None:
            address = self.address(node)
            if address is None:
                return None
            try:
                state = await self.ctx.nodes.drain_status(address, token)
            except (errors.NodeUnreachable, errors.NodeRefused):
                return None
            return _DRAIN[state.state]

        nodes = sorted(wanted & set(self.mnodes))
        states = await asyncio.gather(*(one(n) for n in nodes))
        return {n: s for n, s in zip(nodes, states, strict=True) if s is not None}

    async def routed_states(self, wanted: set[str]) -> dict[str, bool]:
        """Whether the EndpointSlices still route to each leaving node's pod (only those, all
        at once); a node whose slices cannot be read is left out: the planner then waits
        `settle`."""

        async def one(node: str) -> bool | None:
            ip = ((self.pods.get(node) or {}).get("status") or {}).get("podIP")
            service = {SERVICE_NAME_LABEL: names.service_name(node)}
            try:
                slices = await self.ctx.kube.list(
                    k8s.ENDPOINTSLICES, self.namespace, labels=service
                )
            except errors.KubeError as exc:  # e.g. no RBAC for slices: fall back to settle
                log.debug("fleet %s/%s: slices of %s: %s", self.namespace, self.fleet, node, exc)
                return None
            return triggers.routed(slices, ip)

        nodes = sorted(wanted & set(self.mnodes))
        routed = await asyncio.gather(*(one(n) for n in nodes))
        return {n: r for n, r in zip(nodes, routed, strict=True) if r is not None}

    def node_view(
        self, node: str, drain: Drain | None, routed: bool | None = None, *, tls: TlsSpec
    ) -> NodeView:
        """The node as the planner sees it; the earlier pass's view while nothing it is made
        from changed: the same indexed MarketplaceNode and pod objects (a watch event of
        either indexes a new one), drain, route and the fleet's TLS."""
        mnode, pod = self.mnodes[node], self.pods[node]
        rest = (drain, routed, tls, CERTIFICATE_CRD in self.indexes["cert_manager_crds"])
        kept = self.known.get(node)
        if kept is not None and kept[0] is mnode and kept[1] is pod and kept[2] == rest:
            return kept[3]
        view = self._node_view(node, drain, routed, tls=tls)
        self.known[node] = (mnode, pod, rest, view)
        return view

    def _node_view(
        self, node: str, drain: Drain | None, routed: bool | None = None, *, tls: TlsSpec
    ) -> NodeView:
        mnode, pod = self.mnodes[node], self.pods[node]
        image = self.ctx.settings.default_node_image
        ref = names.NodeRef(name=node, namespace=self.namespace, uid="", fleet=self.fleet)
        cert_manager = CERTIFICATE_CRD in self.indexes["cert_manager_crds"]
        view = triggers.node_view(
            mnode,
            pod,
            default_image=image,
            drain=drain or Drain.UNKNOWN,
            routed=routed,
            tls=reconcile_tls.mount_of(ref, tls, cert_manager=cert_manager),
        )
        if mnode["metadata"].get("deletionTimestamp") and view.pod is not None:
            # Being deleted: its finalizer drains it; never a rollout step, still counted.
            return replace(view, desired=view.pod.revision)
        return view

    async def act(self, action: planner.Action) -> None:
        pod = self.pods.get(action.node)
        if pod is None or pod["metadata"].get("uid") != action.pod_uid:
            return  # the observation moved on; the next pass decides again
        if isinstance(action, planner.MarkLeaving):
            await self.mark_leaving(action)
            return
        if isinstance(action, planner.DeletePod):
            await self.ctx.kube.delete(
                k8s.PODS,
                self.namespace,
                names.pod_name(action.node),
                uid=action.pod_uid,
                grace_seconds=int(action.grace_seconds),
            )
            self.ctx.wakeups.wake((self.namespace, action.node))  # its reconcile makes the new pod
            return
        address, token = self.address(action.node), await self.token()
        if address is None or token is None:
            return
        try:
            await self.ctx.nodes.drain(address, token, timeout_seconds=action.timeout_seconds)
        except (errors.NodeUnreachable, errors.NodeRefused) as exc:
            log.info("fleet %s/%s: drain of %s: %s", self.namespace, self.fleet, action.node, exc)

    async def mark_leaving(self, action: planner.MarkLeaving) -> None:
        """Annotate the pod leaving (the node loop then keeps its gate off) and turn the gate
        off now; the uid in both patches is a precondition: a newer pod is never touched."""
        name, now = names.pod_name(action.node), datetime.now(UTC)
        gate_off = pod.gate_patch(
            joined=False,
            reason="Leaving",
            message="taken out of service by the fleet rollout before its drain",
            now=now,
            uid=action.pod_uid,
        )
        meta = {"uid": action.pod_uid, "annotations": {LEAVING_ANNOTATION: rfc3339(now)}}
        try:
            await self.ctx.kube.patch(k8s.PODS, self.namespace, name, {"metadata": meta})
            await self.ctx.kube.patch(
                k8s.PODS, self.namespace, name, gate_off, sub="status", content_type=k8s.STRATEGIC
            )
        except (errors.NotFound, errors.Conflict, errors.Invalid) as exc:
            log.info("fleet %s/%s: %s not marked: %s", self.namespace, self.fleet, name, exc)


def _one(index: Any, key: Any) -> Any:
    store = index.get(key)
    return next(iter(store), None) if store is not None else None


async def run_once(
    ctx: Context,
    namespace: str,
    fleet: str,
    indexes: Mapping[str, Any],
    known: ViewCache,
) -> tuple[bool, pdb.Budget | None, ExposureSpec | None]:
    """One pass: (still busy?, what the fleet's PDB is computed from, its entry Service's
    settings). `known`: the nodes' views of the fleet's earlier passes."""
    fleet_body = await ctx.kube.get(k8s.FLEETS, namespace, fleet)
    if fleet_body is None:
        return False, None, None
    previous = triggers.fleet_status(fleet_body)
    fleet_tls = triggers.fleet_spec(fleet_body).tls
    seen = _Pass.gather(ctx, namespace, fleet, indexes, known)
    members = pdb.members(seen.mnodes.values())
    drains = await seen.drain_states(
        {s.node for s in previous.steps if s.phase == StepPhase.DRAINING}
    )
    routes = await seen.routed_states(
        {s.node for s in previous.steps if s.phase == StepPhase.LEAVING}
    )
    view = FleetView(
        fleet=fleet,
        nodes=tuple(
            seen.node_view(n, drains.get(n), routes.get(n), tls=fleet_tls) for n in seen.mnodes
        ),
        settings=triggers.fleet_settings(
            fleet_body,
            members=members,
            settle=timedelta(seconds=ctx.settings.rollout_settle_seconds),
        ),
        record=triggers.record(previous),
    )
    now = datetime.now(UTC)
    decision = planner.plan(view, now)
    new = status.build(
        previous,
        decision,
        now=now,
        generation=fleet_body["metadata"].get("generation"),
        under=status.under_replicated(seen.mnodes.values()),
    )
    if new != previous:  # the record first: acting on an unwritten decision could repeat it
        await ctx.kube.patch(k8s.FLEETS, namespace, fleet, status.as_patch(new), sub="status")
    await act_all(seen, decision.actions)
    if decision.rejoining is not None:  # its reconcile polls it and reports its new peers
        ctx.wakeups.wake((namespace, decision.rejoining))
    _emit(fleet_body, seen.mnodes, decision.notes)
    busy = bool(decision.record.steps) or decision.phase == RolloutPhase.WAITING
    spec = triggers.fleet_spec(fleet_body)
    budget = pdb.Budget(members, view.settings.max_unavailable)
    return busy, budget, spec.exposure


async def act_all(seen: _Pass, actions: tuple[planner.Action, ...]) -> None:
    """Carry out a decision's actions together: each touches one node's pod (uid-guarded),
    so none waits on another. One by one, a step of 64 nodes was 128 pod patches in a row,
    each a second on a loaded API server, before the next pass could look. Every action is
    tried; the first failure is raised after all are done (the next pass decides again)."""
    results = await asyncio.gather(*(seen.act(a) for a in actions), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise failed[0]


def _emit(
    fleet_body: Mapping[str, Any],
    by_name: Mapping[str, dict[str, Any]],
    notes: tuple[planner.Note, ...],
) -> None:
    """Events on the fleet and, for a node's step, on that MarketplaceNode too; a step's own
    progress (`Note.node_only`) on the node alone, while it exists."""
    for note in notes:
        mnode = by_name.get(note.node or "")
        if mnode is None or not note.node_only:
            events.post(fleet_body, reason=note.reason, message=note.message, warning=note.warning)
        if mnode is not None:
            target = {"apiVersion": API_VERSION, "kind": MNODE_KIND, "metadata": mnode["metadata"]}
            events.post(target, reason=note.reason, message=note.message, warning=note.warning)


_WATCHED = {
    plan.Kind.FLEET_ADMIN: "mnode_secrets",
    plan.Kind.TLS_CA: "mnode_secrets",
    plan.Kind.POLICY_CONFIGMAP: "mnode_configmaps",
}


async def ensure_owners(
    ctx: Context, fleet_body: Mapping[str, Any], indexes: Mapping[str, Any], *, unwatched: bool
) -> None:
    """The fleet's shared objects are owned by its MarketplaceFleet (`reconcile.shared`):
    this loop alone writes their ownership, so N members never do. Watched kinds are read
    from the indexes each pass; the others (`unwatched`) with a GET."""
    meta = fleet_body["metadata"]
    namespace, fleet, uid = meta["namespace"], meta["name"], meta["uid"]
    cert_manager = CERTIFICATE_CRD in indexes["cert_manager_crds"]
    for kind, name in shared.objects(fleet, cert_manager=cert_manager):
        index = _WATCHED.get(kind)
        if index is not None:
            obj = _one(indexes[index], (namespace, name))
        elif unwatched:
            obj = await ctx.kube.get(actuate.RESOURCES[kind], namespace, name)
        else:
            continue
        change = shared.owner_patch(obj, fleet, uid) if obj is not None else None
        if change is None:
            continue
        try:
            await ctx.kube.patch(actuate.RESOURCES[kind], namespace, name, change)
        except (errors.NotFound, errors.Conflict) as exc:  # gone or changed: the next pass
            log.debug("fleet %s/%s: owner of %s %s: %s", namespace, fleet, kind, name, exc)
            continue
        log.info(
            "fleet %s/%s: %s %s now owned by the MarketplaceFleet", namespace, fleet, kind, name
        )


async def ensure_entry(ctx: Context, namespace: str, fleet: str, exposure: ExposureSpec) -> None:
    """The fleet's entry Service exists as `spec.exposure` says (a new type: a new one)."""
    owner = await ctx.kube.get(k8s.FLEETS, namespace, fleet)
    uid = owner["metadata"]["uid"] if owner is not None else None
    wanted = entry.entry_service(fleet, namespace=namespace, exposure=exposure, owner_uid=uid)
    name = entry.entry_name(fleet)
    have = await ctx.kube.get(k8s.SERVICES, namespace, name)
    if have is not None and entry.needs_recreate(have, wanted):
        await ctx.kube.delete(k8s.SERVICES, namespace, name)
        have = None
    if have is None:
        await ctx.kube.create(k8s.SERVICES, wanted)
    elif (change := entry.patch(have, wanted)) is not None:
        await ctx.kube.patch(k8s.SERVICES, namespace, name, change)


async def ensure_pdb(ctx: Context, namespace: str, fleet: str, budget: pdb.Budget) -> None:
    """The fleet's PodDisruptionBudget exists with `minAvailable` = members - budget."""
    owner = await ctx.kube.get(k8s.FLEETS, namespace, fleet)
    uid = owner["metadata"]["uid"] if owner is not None else None
    wanted = pdb.pdb(fleet, namespace=namespace, budget=budget, owner_uid=uid)
    have = await ctx.kube.get(k8s.PDBS, namespace, pdb.pdb_name(fleet))
    if have is None:
        await ctx.kube.create(k8s.PDBS, wanted)
    elif pdb.drifted(have, wanted):
        await ctx.kube.patch(k8s.PDBS, namespace, pdb.pdb_name(fleet), pdb.spec_patch(wanted))
