"""kopf wiring for MarketplaceNodes: indexes of the children, one loop per node, the finalizer.

Thin by design: handlers read kopf's indexes into `nodeloop.Views` and hand over to
`nodeloop`. Every trigger (creation, spec change, resume after a restart, a child's
event, the poll) ends in the same `reconcile_once`, run by the node's daemon, so two
reconciles of one node never race. Watches are server-side filtered to our labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import kopf
from prometheus_client import start_http_server

from marketplace_operator import (
    actuate,
    apihealth,
    errors,
    events,
    gcpace,
    k8s,
    memtrim,
    nodeclient,
    nodeloop,
)
from marketplace_operator.admintoken import AdminTokens
from marketplace_operator.context import Context, FleetMemo
from marketplace_operator.diffbase import (
    LeanAnnotationsDiffBaseStorage,
    LeanAnnotationsProgressStorage,
    diff_read,
    essential_groups,
)
from marketplace_operator.handlers.policy import PolicyHolder
from marketplace_operator.k8s import Kube
from marketplace_operator.metrics import Metrics
from marketplace_operator.model.common import GROUP, LABEL_PREFIX, VERSION
from marketplace_operator.model.fleet import PLURAL as FLEET_PLURAL
from marketplace_operator.model.mnode import PLURAL, MarketplaceNodeSpec
from marketplace_operator.model.tls import CERTIFICATE_CRD, TlsSpec
from marketplace_operator.nodeclient import NodeClient, base_url
from marketplace_operator.policy import versioning
from marketplace_operator.policy.settings import PolicySettings
from marketplace_operator.reconcile import shared
from marketplace_operator.reconcile.fleet import MemberPod, members_key
from marketplace_operator.reconcile.gate import OthersOf
from marketplace_operator.reconcile.node import Desired
from marketplace_operator.reconcile.observe import PodView, pod_status_kept, pod_view
from marketplace_operator.render import entry, names
from marketplace_operator.rollout import gate as rollout_gate
from marketplace_operator.settings import Settings
from marketplace_operator.turnstile import Turnstile

log = logging.getLogger(__name__)

_SELECTOR = f"{names.MANAGED_BY_LABEL}={names.MANAGED_BY}"
_META_KEYS = (
    "name", "namespace", "uid", "resourceVersion", "labels", "annotations",
    "ownerReferences", "deletionTimestamp", "creationTimestamp",
)  # fmt: skip


def _trim(body: Mapping[str, Any], *parts: str) -> dict[str, Any]:
    """What the decisions need of an object, so indexes stay small (never Secret data)."""
    meta = body.get("metadata", {})
    out: dict[str, Any] = {"metadata": {k: meta[k] for k in _META_KEYS if meta.get(k) is not None}}
    for part in parts:
        if body.get(part) is not None:
            out[part] = dict(body[part])
    return out


# --- indexes (watch-fed; no listing in the reconcile) ----------------------------------
# Every handler of ours is a coroutine: kopf runs a plain function in its thread pool,
# a hop per watch event for work of microseconds.


@kopf.index("pods", labels=names.MANAGED)
async def mnode_pods(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    """Each pod under (namespace, name), what the decisions read of it; and a node's pod
    among its fleet's members (`fleet.members_key`). One index, not one per view: kopf
    runs each index handler of an event on its own (its kwargs, state and outcome), and
    a 1,000-node rollout brings some 17,000 pod events (issue 15)."""
    raw = dict(body)  # kopf's views resolve every lookup; what they hold is plain dicts
    meta = raw.get("metadata") or {}
    trimmed = _trim(raw)
    trimmed["status"] = pod_status_kept(raw.get("status") or {})
    trimmed["spec"] = {"nodeName": (raw.get("spec") or {}).get("nodeName")}  # where it runs
    found: dict[Any, Any] = {(namespace, name): trimmed}
    labels = meta.get("labels") or {}
    fleet, node = labels.get(names.FLEET_LABEL), labels.get(names.NODE_LABEL)
    if fleet is not None and node is not None:
        containers = (raw.get("spec") or {}).get("containers") or [{}]
        ports = containers[0].get("ports") or [{}]
        port = int(ports[0].get("containerPort", 7070))
        notes = meta.get("annotations") or {}
        scheme = "https" if notes.get(names.TLS_SCHEME_ANNOTATION) == "https" else "http"
        member = MemberPod(node=node, pod=pod_view(raw), port=port, scheme=scheme)
        found[members_key(namespace, fleet)] = member
    return found


@kopf.index("services", labels=names.MANAGED)
async def mnode_services(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Any, Any]:
    return {(namespace, name): _trim(body, "spec", "status")}  # status: a balancer's address


@kopf.index("persistentvolumeclaims", labels=names.MANAGED)
async def mnode_pvcs(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): _trim(body, "spec", "status")}


@kopf.index("secrets", labels=names.MANAGED)
async def mnode_secrets(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Any, Any]:
    return {(namespace, name): _trim(body)}


@kopf.index("secrets", labels=names.MANAGED)
async def mnode_peer_ids(
    namespace: str | None, labels: kopf.Labels, annotations: kopf.Annotations, **_: Any
) -> Any:
    peer_id, node = annotations.get(names.PEER_ID_ANNOTATION), labels.get(names.NODE_LABEL)
    if peer_id is None or node is None:
        return None
    return {(namespace, labels.get(names.FLEET_LABEL, "")): (node, peer_id)}


@kopf.index("configmaps", labels=names.MANAGED)
async def mnode_configmaps(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Any, Any]:
    return {(namespace, name): _trim(body, "data")}


@kopf.index(GROUP, VERSION, FLEET_PLURAL)
async def mnode_fleet_tls(
    spec: kopf.Spec, namespace: str | None, name: str, **_: Any
) -> dict[Any, Any]:
    """Each MarketplaceFleet's spec.tls: what its nodes' pods mount and who issues."""
    return {(namespace, name): dict(spec.get("tls") or {})}


@kopf.index(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    field="metadata.name",
    value=CERTIFICATE_CRD,
)
async def cert_manager_crds(name: str, **_: Any) -> dict[Any, Any]:
    """Present while cert-manager's Certificate CRD is installed (tls.source Auto)."""
    return {name: True}


def _one(index: kopf.Index[Any, Any], key: Any) -> Any:
    store = index.get(key)
    return next(iter(store), None) if store is not None else None


def gather(
    namespace: str | None,
    name: str,
    fleet: str,
    indexes: Mapping[str, kopf.Index[Any, Any]],
    fleets: FleetMemo,
) -> nodeloop.Views:
    """The node's observed world from the indexes (no API calls).

    What is the fleet's (its members' peer ids) is built once per change of the fleet and
    shared by every member's views (`fleets`), not copied per pass."""
    peer_ids, fleet_ids = fleet_peer_ids(fleets, namespace, fleet, indexes["mnode_peer_ids"])
    return nodeloop.Views(
        pod=_one(indexes["mnode_pods"], (namespace, names.pod_name(name))),
        service=_one(indexes["mnode_services"], (namespace, names.service_name(name))),
        entry_service=_one(indexes["mnode_services"], (namespace, entry.entry_name(fleet))),
        pvc=_one(indexes["mnode_pvcs"], (namespace, names.data_pvc_name(name))),
        identity=_one(indexes["mnode_secrets"], (namespace, names.identity_secret_name(name))),
        admin_secret=_one(indexes["mnode_secrets"], (namespace, names.admin_secret_name(fleet))),
        policy_configmap=_one(
            indexes["mnode_configmaps"], (namespace, names.policy_configmap_name(fleet))
        ),
        current_policy_version=versioning.current_version(
            _one(indexes["mnode_configmaps"], (namespace, names.policy_configmap_name(fleet)))
        ),
        fleet=tuple(indexes["mnode_pods"].get(members_key(namespace, fleet)) or ()),
        peer_ids=peer_ids,
        other_peer_ids=OthersOf(fleet_ids, peer_ids.get(name)),
        fleet_uid=_one(indexes["rollout_fleets"], (namespace, fleet)),
        **_tls_views(namespace, name, fleet, indexes),
    )


def fleet_peer_ids(
    fleets: FleetMemo, namespace: str | None, fleet: str, index: kopf.Index[Any, Any]
) -> tuple[Mapping[str, str], frozenset[str]]:
    """The fleet's members' peer ids by node, and as a set: one of each per fleet."""
    members = tuple(index.get((namespace, fleet)) or ())  # references, compared at C speed

    def build() -> tuple[Mapping[str, str], frozenset[str]]:
        ids = dict(members)
        return ids, frozenset(ids.values())

    return fleets.get(("peer_ids", namespace, fleet), members, build)


def _tls_views(
    namespace: str | None, name: str, fleet: str, indexes: Mapping[str, kopf.Index[Any, Any]]
) -> dict[str, Any]:
    secrets = indexes["mnode_secrets"]
    return {
        "fleet_tls": TlsSpec.model_validate(
            _one(indexes["mnode_fleet_tls"], (namespace, fleet)) or {}
        ),
        "cert_manager": CERTIFICATE_CRD in indexes["cert_manager_crds"],
        "tls_ca": _one(secrets, (namespace, names.tls_ca_secret_name(fleet))),
        "node_tls_secret": _one(secrets, (namespace, names.node_tls_secret_name(name))),
        "fleet_tls_secret": _one(secrets, (namespace, names.fleet_tls_secret_name(fleet))),
    }


def live_members(
    index: kopf.Index[Any, Any], namespace: str, fleet: str
) -> tuple[names.NodeRef, ...]:
    """The fleet's MarketplaceNodes not being deleted (the rollout's index has them all).
    Only a deletion asks (is this the fleet's last node?): built for every pass, it was
    O(N) per pass and a tenth of the operator's CPU while 300 nodes started."""
    metas = (m["metadata"] for m in index.get((namespace, fleet)) or ())
    return tuple(
        names.NodeRef(name=meta["name"], namespace=namespace, uid=meta["uid"], fleet=fleet)
        for meta in metas
        if meta.get("deletionTimestamp") is None
    )


_INDEXES = (
    "mnode_pods", "mnode_services", "mnode_pvcs", "mnode_secrets",
    "mnode_peer_ids", "mnode_configmaps", "rollout_mnodes", "rollout_fleets",
    "mnode_fleet_tls", "cert_manager_crds",
)  # fmt: skip


def _indexes(kwargs: Mapping[str, Any]) -> dict[str, kopf.Index[Any, Any]]:
    return {k: kwargs[k] for k in _INDEXES}


def _fleet_of(body: Mapping[str, Any]) -> str:
    return str((body.get("spec") or {}).get("fleet") or "default")


# --- the node's loop ---------------------------------------------------------------------


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=1.0)
async def mnode_loop(
    stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **kwargs: Any
) -> None:
    """Runs from creation (or operator start) until deletion starts; `body` is live."""
    ctx: Context = memo.ctx
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    indexes = _indexes(kwargs)
    await nodeloop.run(
        ctx,
        body,
        lambda: gather(namespace, name, _fleet_of(body), indexes, ctx.fleets),
        stopped=lambda: bool(stopped),
    )


def shed_managed_fields(body: kopf.Body) -> None:
    """Drop `metadata.managedFields` from the parsed watch event kopf keeps of a node.

    kopf holds the latest body of every object with a daemon (`mnode_loop`'s live `body`)
    for as long as the daemon runs; neither kopf nor this operator reads managedFields,
    the API server's record of which client set which field, which was 11 of a
    MarketplaceNode's 19 KiB there (issue 15). Runs at every event of a node
    (`watches.mnode_event`): kopf calls event handlers before it hands the body to a daemon."""
    meta = body.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)


def mnode_changed(ctx: Context, key: tuple[str, str], body: kopf.Body, *, gone: bool) -> None:
    """Wake the node's loop when what it acts on changed (not for status writes)."""
    shed_managed_fields(body)
    if gone:  # the node is gone: nothing of it is kept
        ctx.node_states.pop(key, None)
        ctx.answers.drop(key)
        return
    wanted = nodeloop.intent(body)
    state = ctx.node(key)
    if state.intent != wanted:
        state.intent = wanted
        ctx.wakeups.wake(key)


def pod_changed(ctx: Context, namespace: str, node: str, view: PodView, *, gone: bool) -> None:
    """Wake the pod's node, and remember its address (what it was pushed goes with it).

    The other members learn a new address at their next pass: at once while they join
    (they poll every `startup_poll_interval_seconds`), within `poll_interval_seconds`
    once joined. Waking the whole fleet at every address change made a fleet of N
    starting (or rolling) nodes N^2 passes, each an admin-API poll (issue 15)."""
    key = (namespace, node)
    ctx.wakeups.wake(key)
    address = (view.ip, view.deleting, view.uid) if not gone else None
    state = ctx.node(key) if address is not None else ctx.node_states.get(key)
    if state is None or state.pod_address == address:
        return
    state.pod_address = address
    if address is None:  # the pod is gone: so is what was remembered of it
        state.pushed_members = None
        ctx.answers.drop(key)
        ctx.release(key)


@kopf.on.event("services", labels=names.MANAGED)
@kopf.on.event("persistentvolumeclaims", labels=names.MANAGED)
@kopf.on.event("secrets", labels=names.MANAGED)
@kopf.on.event("configmaps", labels=names.MANAGED)
async def child_event(
    labels: kopf.Labels, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    node = labels.get(names.NODE_LABEL)
    if node is not None:
        memo.ctx.wakeups.wake((str(namespace), node))


# --- deletion ---------------------------------------------------------------------------


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def mnode_deleted(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Drain before the children go; an unreachable node does not block deletion. The
    fleet's last node takes the fleet's shared objects with it (`reconcile.shared`)."""
    ctx: Context = memo.ctx
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    views = gather(namespace, name, _fleet_of(body), _indexes(kwargs), ctx.fleets)
    desired = nodeloop.desired_of(ctx, body, views)
    await nodeloop.report_status(ctx, body, views, desired)
    await _drain(ctx, body, views, desired)
    members = live_members(kwargs["rollout_mnodes"], namespace, desired.ref.fleet)
    if shared.last_member(members, desired.ref.uid):
        await release_fleet(ctx, namespace, desired.ref.fleet, cert_manager=views.cert_manager)


async def release_fleet(ctx: Context, namespace: str, fleet: str, *, cert_manager: bool) -> None:
    """Delete the fleet's shared objects: its last node is going."""
    for kind, name in shared.objects(fleet, cert_manager=cert_manager):
        if await ctx.kube.delete(actuate.RESOURCES[kind], namespace, name):
            log.info("%s: deleted %s %s with the fleet's last node", namespace, kind, name)


async def _drain(ctx: Context, body: kopf.Body, views: nodeloop.Views, desired: Desired) -> None:
    name = body["metadata"]["name"]
    pod = pod_view(views.pod) if views.pod is not None else None
    if pod is None or pod.ip is None or pod.deleting:
        return
    spec = MarketplaceNodeSpec.model_validate(body.get("spec") or {})
    try:
        token = await nodeloop.admin_token(ctx, desired.ref, views.admin_secret)
        drained = await actuate.drain(
            ctx.nodes,
            base_url(pod.ip, pod.admin_port(spec.p2p.port)),
            token,
            deadline_seconds=spec.drain_timeout_seconds,
            poll=ctx.settings.drain_poll_seconds,
        )
    except errors.OperatorError as exc:
        events.warning(body, events.Reason.DRAIN_SKIPPED, f"deleting without drain: {exc.message}")
        return
    if drained:
        events.normal(body, events.Reason.DRAINED, f"node {name} drained before deletion")
    else:
        events.warning(body, events.Reason.DRAIN_SKIPPED, "drain timed out; deleting anyway")


# --- lifecycle --------------------------------------------------------------------------


_NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def may_skip_scanning(namespaces: Sequence[str], *, all_namespaces: bool) -> bool:
    """Whether kopf can serve these namespaces without watching Namespaces and CRDs.

    Only for a non-empty list of exact names: a valid namespace name (DNS-1123 label)
    cannot hold kopf's pattern syntax (`*`, `?`, `!`, `,`), so kopf takes it literally.
    Globs and negations need the namespace watch to find what matches; all-namespaces
    watches cluster-wide and does not scan namespaces anyway.
    """
    return (
        not all_namespaces
        and bool(namespaces)
        and all(_NAMESPACE_NAME.fullmatch(ns) for ns in namespaces)
    )


def configure(settings: kopf.OperatorSettings, cfg: Settings) -> None:
    """kopf settings: progress in annotations (no kopf fields in status), quiet events,
    server-side label filters on the children's watches, no scanning for exact namespaces."""
    prefix = LABEL_PREFIX.rstrip("/")
    settings.persistence.progress_storage = LeanAnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = LeanAnnotationsDiffBaseStorage(
        prefix=prefix,
        key="last-handled-configuration",
        groups=essential_groups(kopf.get_default_registry()),
        stored=diff_read(kopf.get_default_registry()),
    )
    settings.persistence.finalizer = f"{prefix}/finalizer"
    settings.posting.level = logging.WARNING
    for plural in ("pods", "services", "persistentvolumeclaims", "secrets", "configmaps"):
        settings.watching.label_selectors[plural] = _SELECTOR
    settings.peering.name = cfg.peering_name
    settings.peering.standalone = cfg.standalone
    settings.peering.lifetime = cfg.peering_lifetime_seconds
    # kopf 1.45 (observation.revise_namespaces) drops a terminating namespace from its
    # watched set on an event whose conditions are all False, which the namespace
    # controller writes before it reports content remaining; every watcher there stops
    # and later events (ContentRemaining True) never bring it back, so our finalizers
    # never run and `kubectl delete namespace` hangs. Exact names need no namespace
    # watch: kopf serves them until our finalizers are done. The cost: scanning also
    # watches CRDs, so a CRD created or changed after start is seen only after a restart
    # (the chart installs the CRDs before the operator; an upgrade with a new image
    # restarts it).
    settings.scanning.disabled = may_skip_scanning(
        cfg.watched_namespaces, all_namespaces=cfg.all_namespaces
    )


@kopf.on.login()
async def login(
    logger: kopf.Logger, settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any
) -> kopf.AiohttpSession | kopf.ConnectionInfo | None:
    """kopf's default credentials (`login_via_client`: in-cluster, else the kubeconfig) on
    a bounded connection pool (`kopf_credentials`)."""
    info = kopf.login_via_client(logger=logger, settings=settings, **kwargs)
    return kopf_credentials(info, memo.settings)


def kopf_credentials(
    info: kopf.ConnectionInfo | None, cfg: Settings
) -> kopf.AiohttpSession | kopf.ConnectionInfo | None:
    """`info` on a pool of `k8s.kopf_connection_limit` connections (call it on the event
    loop): unbounded, 1,000 nodes were about 1,900 TLS connections. Patterns of
    namespaces keep kopf's pool (how many watches they make is not known)."""
    exact = may_skip_scanning(cfg.watched_namespaces, all_namespaces=cfg.all_namespaces)
    namespaces = 1 if cfg.all_namespaces else len(cfg.watched_namespaces) if exact else None
    limit = k8s.kopf_connection_limit(namespaces)
    if info is None or limit is None:
        return info
    return k8s.kopf_session(info, limit=limit)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """The operator's one startup: every handler finds `memo.ctx` and `memo.policy` built
    (no handler waits for another's startup)."""
    cfg: Settings = memo.settings
    configure(settings, cfg)
    metrics = Metrics(memo.registry, phases=lambda: memo.ctx.phases())  # noqa: PLW0108 - ctx is set below
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port, addr=cfg.metrics_address, registry=memo.registry)
    policy_settings = PolicySettings()
    kube = await Kube.from_environment(
        timeout=cfg.api_timeout_seconds, on_unavailable=metrics.api_unavailable_call
    )
    tokens = AdminTokens(nodeloop.token_reader(kube), overlap=cfg.admin_token_overlap_seconds)
    memo.ctx = Context(
        settings=cfg,
        kube=kube,
        nodes=NodeClient.create(
            timeout=cfg.admin_timeout_seconds,
            concurrency=cfg.admin_concurrency,
            connections=cfg.admin_concurrency + policy_settings.parallelism,  # policy's too
            on_error=metrics.admin_error,
            on_call=metrics.admin_call,
            alternatives=tokens.alternatives,
            yields_to_pushes=nodeclient.PUSH_PRIORITY_SECONDS,  # the node loops' polls
        ),
        metrics=metrics,
        tokens=tokens,
        passes=Turnstile(cfg.reconcile_concurrency),
        # Replacing stale pods is the fleet rollout's job: the node reconcile defers to it.
        may_replace=rollout_gate.may_replace,
        policy_required=policy_settings.enabled,
    )
    memo.policy = PolicyHolder(policy_settings)
    memo.api_health = asyncio.create_task(
        apihealth.watch(kube.ready, metrics.api_readiness, interval=cfg.api_check_seconds),
        name="API server readiness",
    )
    trim = memtrim.libc_trim()
    if trim is not None:
        memo.heap_trim = asyncio.create_task(memtrim.trim_forever(trim), name="heap trim")
    gcpace.Timer(metrics.gc_collection).install()
    gcpace.pace()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    background: tuple[asyncio.Task[None] | None, ...] = (
        getattr(memo, "api_health", None),
        getattr(memo, "heap_trim", None),
    )
    for task in background:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    ctx: Context | None = getattr(memo, "ctx", None)
    if ctx is not None:
        await ctx.nodes.close()
        await ctx.kube.close()
