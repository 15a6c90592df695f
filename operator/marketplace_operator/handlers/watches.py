"""One watch-event handler for each of the busiest kinds, pods and MarketplaceNodes.

The node loops, the rollout and the policy worker all follow both kinds. kopf runs each
handler of an event on its own (its kwargs, its logging context, its error handling,
its outcome); with a handler per part, every pod event ran three and every
MarketplaceNode event two, and a 1,000-node rollout brings tens of thousands of events
(issue 15). Here each event is read once and handed to every part in turn.
"""

from __future__ import annotations

from typing import Any

import kopf

from marketplace_operator.context import Context
from marketplace_operator.handlers import mnode, policy, rollout
from marketplace_operator.model.common import GROUP, VERSION
from marketplace_operator.model.mnode import PLURAL as MNODE_PLURAL
from marketplace_operator.reconcile.observe import pod_view
from marketplace_operator.render import names


@kopf.on.event("pods", labels=names.MANAGED)
async def pod_event(
    *,
    type: str | None,
    body: kopf.Body,
    labels: kopf.Labels,
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """A node's pod changed: its node's loop, its fleet's rollout and policy worker hear."""
    ctx: Context = memo.ctx
    ctx.metrics.watch_event("pods")
    namespace = str(namespace)
    node, fleet = labels.get(names.NODE_LABEL), labels.get(names.FLEET_LABEL)
    view = pod_view(dict(body))
    gone = type == "DELETED"
    if node is not None:
        mnode.pod_changed(ctx, namespace, node, view, gone=gone)
    if fleet is not None:
        rollout.pod_changed(ctx, namespace, fleet)
        policy.pod_changed(memo, kwargs, (namespace, name), fleet, view, gone=gone)


@kopf.on.event(GROUP, VERSION, MNODE_PLURAL)
async def mnode_event(
    *, type: str | None, body: kopf.Body, namespace: str | None, name: str, memo: Any, **kw: Any
) -> None:
    """A MarketplaceNode changed: its own loop (when what it acts on did) and its fleet's
    rollout hear; a deleted one's state is dropped."""
    ctx: Context = memo.ctx
    ctx.metrics.watch_event("marketplacenodes")
    namespace = str(namespace)
    gone = type == "DELETED"
    mnode.mnode_changed(ctx, (namespace, name), body, gone=gone)
    await rollout.mnode_changed(ctx, namespace, body, kw["rollout_fleets"], gone=gone)
