"""kopf wiring for fleet policy: indexes and event handlers only, plus the worker's adapters.

BanLists, RateLimitPolicies and (for their replication setting) MarketplaceFleets are
watched with `@kopf.index` and `@kopf.on.event` only. None stores anything on the
object, so kopf never writes its last-handled-configuration annotation, which would
outgrow the 256 KiB annotation limit on a list of 2,000 bans (kopf issue #1087). kopf calls event
handlers only once every index is fully populated, so the first round never
sees half a fleet's BanLists (which would briefly lift bans).

Events only mark fleets dirty; `policy.worker.PolicyWorker` (one asyncio task,
plus the local-ban collection loop) does the work, and hears each node's applied
version from the node loops' status polls (`Context.policy_heard`). The operator's
one startup (`handlers.mnode.start`) builds `memo.ctx` and the `PolicyHolder`; the
worker itself starts on the first event on purpose: kopf calls event handlers
only once every index is complete, and a round that saw a half-filled BanList
index would lift bans.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import kopf
from marketplace_protocol.admin import Peering, Replication
from marketplace_protocol.clock import SystemClock, to_datetime
from pydantic import ValidationError

from marketplace_operator import errors, events, k8s
from marketplace_operator.context import Context
from marketplace_operator.model.banlist import BanList, BanListSpec
from marketplace_operator.model.common import API_VERSION, GROUP, LABEL_PREFIX, VERSION
from marketplace_operator.model.fleet import PLURAL as FLEET_PLURAL
from marketplace_operator.model.fleet import MarketplaceFleetSpec
from marketplace_operator.model.ratelimitpolicy import RateLimitPolicy, RateLimitPolicySpec
from marketplace_operator.nodeclient import NodeClient, base_url
from marketplace_operator.policy.metrics import PolicyMetrics
from marketplace_operator.policy.ports import (
    FleetKey,
    FleetWire,
    InvalidObject,
    ObjectRef,
    auto_banlist_name,
)
from marketplace_operator.policy.propagate import NodeTarget
from marketplace_operator.policy.settings import PolicySettings
from marketplace_operator.policy.versioning import PolicyVersion, from_annotations
from marketplace_operator.policy.worker import PolicyWorker
from marketplace_operator.reconcile.fleet import fleets_of, members_key
from marketplace_operator.reconcile.observe import PodView
from marketplace_operator.render import names

log = logging.getLogger(__name__)

BANLISTS = k8s.Resource("banlists", GROUP, VERSION)
RATELIMITPOLICIES = k8s.Resource("ratelimitpolicies", GROUP, VERSION)
AUTO_LABEL = f"{LABEL_PREFIX}auto"


# --- parsing objects into the pure models ----------------------------------------------


def _created(meta: Mapping[str, Any]) -> datetime:
    raw = meta.get("creationTimestamp")
    return datetime.fromisoformat(raw) if raw else to_datetime(0)


def _ref(plural: str, meta: Mapping[str, Any]) -> ObjectRef:
    return ObjectRef(
        plural, meta["namespace"], meta["name"], meta.get("uid", ""), int(meta.get("generation", 0))
    )


def _invalid(plural: str, body: Mapping[str, Any], exc: ValidationError) -> InvalidObject:
    fleet = (body.get("spec") or {}).get("fleet", "*")
    first = exc.errors(include_url=False, include_input=False)[:3]
    message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in first)
    return InvalidObject(_ref(plural, body["metadata"]), str(fleet), message[:1000])


def parse_banlist(body: Mapping[str, Any]) -> BanList | InvalidObject:
    meta = body["metadata"]
    try:
        return BanList(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta.get("uid", ""),
            created=_created(meta),
            generation=int(meta.get("generation", 0)),
            spec=BanListSpec.model_validate(body.get("spec") or {}),
            status=dict(body.get("status") or {}),
        )
    except ValidationError as exc:
        return _invalid("banlists", body, exc)


def parse_policy(body: Mapping[str, Any]) -> RateLimitPolicy | InvalidObject:
    meta = body["metadata"]
    try:
        return RateLimitPolicy(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta.get("uid", ""),
            generation=int(meta.get("generation", 0)),
            spec=RateLimitPolicySpec.model_validate(body.get("spec") or {}),
            status=dict(body.get("status") or {}),
        )
    except ValidationError as exc:
        return _invalid("ratelimitpolicies", body, exc)


# --- indexes -----------------------------------------------------------------------------


def _cached(
    memo: kopf.Memo, body: Mapping[str, Any], parse: Any
) -> BanList | RateLimitPolicy | InvalidObject:
    """Parse the spec once per generation (kopf's per-object memo): our own status writes
    come back as events of the same generation and must not re-parse 2,000 entries.
    On the event loop: a BanList of 2,000 entries parses in about 30 ms, once per spec
    change, less than a thread hop per watch event would cost over its life."""
    meta = body["metadata"]
    key = (meta.get("uid"), meta.get("generation"))
    cached = getattr(memo, "policy_parsed", None)
    if cached is not None and cached[0] == key:
        parsed = cached[1]
    else:
        parsed = parse(body)
        memo.policy_parsed = (key, parsed)
    if isinstance(parsed, InvalidObject):
        return parsed
    return parsed.model_copy(update={"status": dict(body.get("status") or {})})  # type: ignore[no-any-return]


@kopf.index(GROUP, VERSION, "banlists")
async def policy_banlists(
    body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any
) -> dict[Any, Any]:
    return {namespace: _cached(memo, dict(body), parse_banlist)}


@kopf.index(GROUP, VERSION, FLEET_PLURAL)
async def policy_fleets(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Any, Any]:
    """Each MarketplaceFleet's settings for the policy document (replication, peering), or
    None when its spec cannot be read (the schema refuses such specs; the nodes then keep
    their own settings)."""
    try:
        spec = MarketplaceFleetSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return {(namespace, name): None}
    peering = None if spec.peering is None else spec.peering.wire()
    return {(namespace, name): FleetWire(spec.replication.wire(), peering)}


@kopf.index(GROUP, VERSION, "ratelimitpolicies")
async def policy_ratelimitpolicies(
    body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any
) -> dict[Any, Any]:
    return {namespace: _cached(memo, dict(body), parse_policy)}


@dataclass
class IndexInputs:
    """The worker's `Inputs`, read from kopf's live indexes (no API calls)."""

    banlist_index: kopf.Index[Any, Any]
    policy_index: kopf.Index[Any, Any]
    pod_index: kopf.Index[Any, Any]  # `mnode_pods`: its fleets' members under `members_key`
    configmap_index: kopf.Index[Any, Any]
    fleet_index: kopf.Index[Any, Any]

    def fleet_uid(self, key: FleetKey) -> str | None:
        found = self.configmap_index.get((key.namespace, names.policy_configmap_name(key.fleet)))
        cm = next(iter(found), None) if found is not None else None
        return None if cm is None else str(cm["metadata"].get("uid"))

    def banlists(self, namespace: str) -> Sequence[BanList]:
        found = self.banlist_index.get(namespace) or ()
        return sorted((b for b in found if isinstance(b, BanList)), key=lambda b: b.name)

    def policies(self, namespace: str) -> Sequence[RateLimitPolicy]:
        found = self.policy_index.get(namespace) or ()
        return sorted((p for p in found if isinstance(p, RateLimitPolicy)), key=lambda p: p.name)

    def invalid(self, namespace: str) -> Sequence[InvalidObject]:
        found = [
            *(self.banlist_index.get(namespace) or ()),
            *(self.policy_index.get(namespace) or ()),
        ]
        return [i for i in found if isinstance(i, InvalidObject)]

    def nodes(self, key: FleetKey) -> Sequence[NodeTarget]:
        targets = []
        for member in self.pod_index.get(members_key(key.namespace, key.fleet)) or ():
            pod = member.pod
            if pod.ip is None or pod.deleting or pod.phase in {"Failed", "Succeeded"}:
                continue
            if not pod.started:  # not answering yet: it starts on the ConfigMap's policy
                continue
            targets.append(
                NodeTarget(member.node, pod.uid, base_url(pod.ip, pod.admin_port(member.port)))
            )
        return sorted(targets, key=lambda t: t.name)

    def fleets(self) -> Collection[FleetKey]:
        listed = (key for key, pods in self.pod_index.items() if pods)
        return {FleetKey(str(ns), str(fleet)) for ns, fleet in fleets_of(listed)}

    def _fleet(self, key: FleetKey) -> FleetWire | None:
        found = self.fleet_index.get((key.namespace, key.fleet))
        return next(iter(found), None) if found is not None else None

    def replication(self, key: FleetKey) -> Replication | None:
        fleet = self._fleet(key)
        return None if fleet is None else fleet.replication

    def peering(self, key: FleetKey) -> Peering | None:
        fleet = self._fleet(key)
        return None if fleet is None else fleet.peering


# --- the Kubernetes side of the worker --------------------------------------------------


def _owned_by_configmap(owner: Mapping[str, Any]) -> dict[str, Any]:
    """A reference to the fleet ConfigMap (whose `metadata` is `owner`): what hangs off it is
    collected with it, whatever members come and go meanwhile."""
    return names.owner_reference_to("v1", "ConfigMap", owner["name"], owner["uid"])


@dataclass
class KubeCluster:
    """The worker's `Cluster` port over the one Kube adapter."""

    kube: k8s.Kube

    async def _configmap(self, key: FleetKey) -> dict[str, Any]:
        found = await self.kube.get(
            k8s.CONFIGMAPS, key.namespace, names.policy_configmap_name(key.fleet)
        )
        if found is None:
            raise errors.NotFound(f"ConfigMap {names.policy_configmap_name(key.fleet)} not found")
        return found

    async def read_version(self, key: FleetKey) -> PolicyVersion | None:
        return from_annotations((await self._configmap(key))["metadata"].get("annotations"))

    async def write_policy(
        self, key: FleetKey, patch: dict[str, Any], shards: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Shards first, the fleet ConfigMap (and its manifest) last: a node never sees a
        manifest whose parts were not written. Parts a smaller policy no longer references
        stay behind, unread, until overwritten or collected with the fleet ConfigMap."""
        for index, shard in enumerate(shards, start=1):
            await self._write_shard(key, index, shard)
        await self.kube.patch(
            k8s.CONFIGMAPS, key.namespace, names.policy_configmap_name(key.fleet), patch
        )

    async def _write_shard(self, key: FleetKey, index: int, patch: dict[str, Any]) -> None:
        name = names.policy_shard_configmap_name(key.fleet, index)
        try:
            await self.kube.patch(k8s.CONFIGMAPS, key.namespace, name, patch)
            return
        except errors.NotFound:
            pass
        owner = (await self._configmap(key))["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                **patch.get("metadata", {}),
                "name": name,
                "namespace": key.namespace,
                "labels": names.fleet_labels(key.fleet),
                "ownerReferences": [_owned_by_configmap(owner)],
            },
            "binaryData": patch["binaryData"],
        }
        if await self.kube.create(k8s.CONFIGMAPS, body) is None:  # created meanwhile: patch it
            await self.kube.patch(k8s.CONFIGMAPS, key.namespace, name, patch)

    async def write_auto_banlist(self, key: FleetKey, entries: list[dict[str, Any]]) -> None:
        name = auto_banlist_name(key.fleet)
        spec = {"fleet": key.fleet, "entries": entries}
        try:
            await self.kube.patch(BANLISTS, key.namespace, name, {"spec": spec})
            return
        except errors.NotFound:
            pass
        owner = (await self._configmap(key))["metadata"]
        await self.kube.create(
            BANLISTS,
            {
                "apiVersion": API_VERSION,
                "kind": "BanList",
                "metadata": {
                    "name": name,
                    "namespace": key.namespace,
                    "labels": {**names.fleet_labels(key.fleet), AUTO_LABEL: "true"},
                    "annotations": {
                        f"{LABEL_PREFIX}description": (
                            "Bans decided by the fleet's nodes, spread by the operator; "
                            "lift one with an allow entry in your own BanList."
                        )
                    },
                    "ownerReferences": [_owned_by_configmap(owner)],
                },
                "spec": spec,
            },
        )

    async def write_status(self, ref: ObjectRef, status: dict[str, Any]) -> None:
        resource = BANLISTS if ref.plural == "banlists" else RATELIMITPOLICIES
        try:
            await self.kube.patch(
                resource, ref.namespace, ref.name, {"status": status}, sub="status"
            )
        except errors.NotFound:
            return  # deleted meanwhile

    async def event(self, ref: ObjectRef, *, reason: str, message: str, warning: bool) -> None:
        kind = "BanList" if ref.plural == "banlists" else "RateLimitPolicy"
        meta = {"name": ref.name, "namespace": ref.namespace, "uid": ref.uid}
        target = {"apiVersion": API_VERSION, "kind": kind, "metadata": meta}
        events.post(target, reason=reason, message=message, warning=warning)


# --- the runtime: one worker, started on the first event --------------------------------


@dataclass
class PolicyRuntime:
    worker: PolicyWorker
    tasks: list[asyncio.Task[None]]
    client: NodeClient
    generations: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # (namespace, pod) -> (ip, deleting, uid, started) as last seen.
    pods: dict[tuple[str, str], tuple[str | None, bool, str, bool]] = field(default_factory=dict)

    def spec_changed(self, type: str | None, plural: str, body: Mapping[str, Any]) -> bool:
        """A new generation or a deletion; False for status-only events (our own writes)."""
        meta = body.get("metadata", {})
        key = (plural, str(meta.get("namespace")), str(meta.get("name")))
        generation = int(meta.get("generation", 0))
        if type == "DELETED":
            self.generations.pop(key, None)
        elif self.generations.get(key) == generation:
            return False
        else:
            self.generations[key] = generation
        return True


@dataclass
class PolicyHolder:
    """Put in the operator's memo at startup; kopf gives each object a shallow copy of the
    memo, so the runtime must live in a shared mutable holder, not in a memo attribute."""

    settings: PolicySettings
    runtime: PolicyRuntime | None = None


def _runtime(memo: kopf.Memo, kwargs: Mapping[str, Any]) -> PolicyRuntime | None:
    """The running worker, started on first use; None when fleet policy is disabled."""
    holder: PolicyHolder = memo.policy
    if holder.runtime is not None or not holder.settings.enabled:
        return holder.runtime
    ctx: Context = memo.ctx
    settings = holder.settings
    inputs = IndexInputs(
        kwargs["policy_banlists"],
        kwargs["policy_ratelimitpolicies"],
        kwargs["mnode_pods"],
        kwargs["mnode_configmaps"],
        kwargs["policy_fleets"],
    )
    # Slots of its own (with hundreds of nodes, the node loops keep theirs busy, and a ban
    # must not queue behind them) on the node loops' connections (`NodeClient.sharing`).
    client = ctx.nodes.sharing(concurrency=settings.parallelism)
    secrets = kwargs["mnode_secrets"]

    async def token(key: FleetKey) -> str:
        seen = next(
            iter(secrets.get((key.namespace, names.admin_secret_name(key.fleet))) or ()), None
        )
        return await ctx.tokens.get(key.namespace, key.fleet, seen)

    worker = PolicyWorker(
        inputs=inputs,
        cluster=KubeCluster(ctx.kube),
        client=client,
        metrics=PolicyMetrics(memo.registry),
        settings=settings,
        clock=SystemClock(),
        tokens=token,
    )
    tasks = [
        asyncio.create_task(worker.run(), name="policy worker"),
        asyncio.create_task(worker.collect_forever(), name="local-ban collection"),
    ]
    runtime = PolicyRuntime(worker, tasks, client)
    holder.runtime = runtime
    ctx.policy_heard = lambda namespace, fleet, node, status: worker.heard(
        FleetKey(namespace, fleet), node, status.policy_version, local_bans=status.local_bans
    )
    for key in inputs.fleets():
        worker.mark(key)
    return runtime


@kopf.on.event(GROUP, VERSION, "banlists")
@kopf.on.event(GROUP, VERSION, "ratelimitpolicies")
async def policy_object_event(
    *,
    type: str | None,
    body: kopf.Body,
    resource: kopf.Resource,
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """A spec change (generation) or a deletion marks the namespace's fleets dirty."""
    runtime = _runtime(memo, kwargs)
    if runtime is not None and runtime.spec_changed(type, resource.plural, body):
        runtime.worker.mark_namespace(str(namespace))


@kopf.on.event(GROUP, VERSION, FLEET_PLURAL)
async def policy_fleet_event(
    *,
    type: str | None,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """A MarketplaceFleet's spec changed (its replication may have): its fleet needs a round.
    The rollout writes the fleet's status often; those events keep the generation."""
    runtime = _runtime(memo, kwargs)
    if runtime is not None and runtime.spec_changed(type, FLEET_PLURAL, body):
        runtime.worker.mark(FleetKey(str(namespace), name))


def pod_changed(
    memo: kopf.Memo,
    kwargs: Mapping[str, Any],
    pod_key: tuple[str, str],
    fleet: str,
    view: PodView,
    *,
    gone: bool,
) -> None:
    """A node's pod got, changed or lost its address, or its node began to answer: news for
    its fleet's policy worker (`PolicyWorker.pod_changed`)."""
    runtime = _runtime(memo, kwargs)
    if runtime is None:
        return
    address = (view.ip, view.deleting, view.uid, view.started)
    if gone:
        runtime.pods.pop(pod_key, None)
    elif runtime.pods.get(pod_key) == address:
        return
    else:
        runtime.pods[pod_key] = address
    runtime.worker.pod_changed(FleetKey(pod_key[0], fleet))


@kopf.on.cleanup()
async def policy_stop(memo: kopf.Memo, **_: Any) -> None:
    holder: PolicyHolder | None = getattr(memo, "policy", None)
    runtime = holder.runtime if holder is not None else None
    if runtime is None:
        return
    for task in runtime.tasks:
        task.cancel()
    await asyncio.gather(*runtime.tasks, return_exceptions=True)
    await runtime.client.close()
