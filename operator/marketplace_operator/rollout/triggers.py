"""What makes a node need a new pod, read from raw API objects into the planner's views.

Three triggers, one mechanism: the core's pod-template hash (`render.pod`) covers the
resolved image (so a change of the operator's default image moves every node without
`spec.image`), the settings that shape the pod, and the restart token — the value of
the MarketplaceNode's `marketplace.p2p.dev/restartedAt` annotation, as
`kubectl rollout restart` sets it on a Deployment. The pod carries the hash (and the
token) it was created from, so "stale" is a comparison of two annotations.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from marketplace_operator.model.fleet import (
    LEAVING_ANNOTATION,
    PAUSED_ANNOTATION,
    RESTARTED_AT_ANNOTATION,
    MarketplaceFleetSpec,
    MarketplaceFleetStatus,
    resolve_max_unavailable,
)
from marketplace_operator.model.mnode import MarketplaceNodeSpec
from marketplace_operator.reconcile.observe import pod_view
from marketplace_operator.render import names, pod
from marketplace_operator.rollout.observation import (
    Drain,
    FleetSettings,
    NodeView,
    PodView,
    Record,
    Revision,
)

Body = Mapping[str, Any]
TRUE_VALUES = frozenset({"true", "yes", "1", "on"})


def _annotations(body: Body) -> Mapping[str, str]:
    return (body.get("metadata") or {}).get("annotations") or {}


def _spec_text(mnode: Body) -> str:
    return json.dumps(mnode.get("spec") or {}, sort_keys=True, separators=(",", ":"))


def desired_revision(
    mnode: Body, *, default_image: str, tls: names.TlsMount | None = None
) -> Revision:
    """Memoized on the spec's JSON: every rollout pass reads every member's, and validating
    and hashing twenty specs per pass was a tenth of the operator's CPU while a fleet
    starts. `tls`: what the fleet's spec.tls mounts (reconcile.tls.mount_of)."""
    return _revision(_spec_text(mnode), pod.restart_token(mnode), default_image, tls)


@functools.lru_cache(maxsize=4096)
def _revision(
    spec_text: str, token: str, default_image: str, tls: names.TlsMount | None
) -> Revision:
    spec = MarketplaceNodeSpec.model_validate_json(spec_text)
    inputs = pod.PodInputs.resolve(spec, default_image=default_image, restart_token=token, tls=tls)
    return Revision(pod.template_hash(inputs), token or None)


def pod_revision(pod_body: Body) -> Revision:
    """The revision a pod was created from (its annotations); unknown hash → never current."""
    notes = _annotations(pod_body)
    return Revision(
        str(notes.get(names.TEMPLATE_HASH_ANNOTATION, "")),
        str(notes[RESTARTED_AT_ANNOTATION]) if RESTARTED_AT_ANNOTATION in notes else None,
    )


def grace(mnode: Body) -> timedelta:
    """The node's drain timeout plus the pod's margin: the most its drain and exit may take."""
    return _grace(_spec_text(mnode))


@functools.lru_cache(maxsize=4096)
def _grace(spec_text: str) -> timedelta:
    spec = MarketplaceNodeSpec.model_validate_json(spec_text)
    return timedelta(seconds=spec.drain_timeout_seconds + pod.GRACE_MARGIN_SECONDS)


def node_view(
    mnode: Body,
    pod_body: Body | None,
    *,
    default_image: str,
    drain: Drain = Drain.UNKNOWN,
    routed: bool | None = None,
    tls: names.TlsMount | None = None,
) -> NodeView:
    """One MarketplaceNode and its pod as the planner sees them."""
    name = str(mnode["metadata"]["name"])
    desired = desired_revision(mnode, default_image=default_image, tls=tls)
    status = mnode.get("status") or {}
    listed = status.get("connectedPeers")
    base = NodeView(
        name,
        desired,
        None,
        grace(mnode),
        peer_id=status.get("peerId"),
        peers=frozenset(map(str, listed)) if listed is not None else None,
        peer_count=int(status.get("peers") or 0),
    )
    if pod_body is None:
        return base
    seen = pod_view(dict(pod_body))
    view = PodView(
        revision=pod_revision(pod_body),
        uid=seen.uid,
        ready=seen.ready,
        joined=seen.joined,
        deleting=seen.deleting,
        failed=seen.phase in {"Failed", "Succeeded"} or seen.stuck_reason is not None,
        leaving=LEAVING_ANNOTATION in _annotations(pod_body),
        drain=drain,
        routed=routed,
    )
    return replace(base, pod=view)


def fleet_spec(fleet: Body | None) -> MarketplaceFleetSpec:
    return MarketplaceFleetSpec.model_validate((fleet or {}).get("spec") or {})


def fleet_settings(fleet: Body | None, *, members: int, settle: timedelta) -> FleetSettings:
    """Settings of a fleet's rollout; a fleet without its object gets the defaults.
    `members`: what a percentage maxUnavailable is of (as the fleet's PDB counts them)."""
    spec = fleet_spec(fleet)
    paused = str(_annotations(fleet or {}).get(PAUSED_ANNOTATION, "")).lower() in TRUE_VALUES
    return FleetSettings(
        max_unavailable=resolve_max_unavailable(spec.max_unavailable, members),
        paused=paused,
        step_timeout=timedelta(seconds=spec.step_timeout_seconds),
        settle=settle,
    )


def fleet_status(fleet: Body | None) -> MarketplaceFleetStatus:
    """The fleet's status as written; an unreadable one counts as empty (and is rewritten)."""
    raw = (fleet or {}).get("status") or {}
    known = {k: v for k, v in raw.items() if k in _STATUS_FIELDS}
    try:
        return MarketplaceFleetStatus.model_validate(known)
    except ValidationError:
        return MarketplaceFleetStatus()


_STATUS_FIELDS = frozenset(
    f.alias or n for n, f in MarketplaceFleetStatus.model_fields.items()
) | frozenset(MarketplaceFleetStatus.model_fields)


def record(status: MarketplaceFleetStatus) -> Record:
    return Record(steps=tuple(status.steps), failures=tuple(status.failures))


def routed(slices: Iterable[Body], pod_ip: str | None) -> bool:
    """Does any EndpointSlice list `pod_ip` as a ready endpoint? (An absent `ready` means
    ready, as the EndpointSlice API defines it.) No slices at all, e.g. addresses the
    slice controller does not publish, means no load balancer routes to it through them."""
    if pod_ip is None:
        return False
    for piece in slices:
        for endpoint in piece.get("endpoints") or ():
            ready = (endpoint.get("conditions") or {}).get("ready")
            if pod_ip in (endpoint.get("addresses") or ()) and ready is not False:
                return True
    return False
