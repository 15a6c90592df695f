"""The objects a whole fleet shares: who owns them and when they go.

The admin Secret, the policy ConfigMap, the operator's CA Secret and the cert-manager
Issuer and Certificate belong to the fleet, not to one node. They are owned by the
fleet's MarketplaceFleet (one reference), kept so by the fleet's loop alone, and deleted
by the operator when the fleet's last MarketplaceNode goes (its finalizer), so a fleet
recreated under its name starts afresh.

Before, they carried one owner reference per member, and garbage collection removed them
with the last. Every member added itself: at 1,000 nodes, 939 references (182 KB per
object) and 816 writes of 4-5 s each, every one a watch event of that size for the
operator and each pod that mounts the object (issue 15). Objects made that way are
adopted: their member references are stripped, the MarketplaceFleet's put in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from marketplace_operator.model.common import API_VERSION
from marketplace_operator.model.fleet import KIND as FLEET_KIND
from marketplace_operator.model.mnode import KIND as MNODE_KIND
from marketplace_operator.reconcile.node import Kind
from marketplace_operator.render import names


def _ours(owner: Mapping[str, Any]) -> bool:
    """A MarketplaceNode (an older operator's co-owners) or a MarketplaceFleet (perhaps
    one deleted, whose name a recreated fleet took): ours to replace."""
    return owner.get("apiVersion") == API_VERSION and owner.get("kind") in {MNODE_KIND, FLEET_KIND}


def owner_patch(obj: Mapping[str, Any], fleet: str, fleet_uid: str) -> dict[str, Any] | None:
    """The merge patch that makes the MarketplaceFleet `fleet_uid` the shared object's
    only owner of ours (`_ours`), keeping anyone else's references; None when
    it already is so. The patch names the resourceVersion it was computed from: the list
    is replaced whole, so a change meanwhile fails it (409) instead of being lost."""
    meta = obj.get("metadata") or {}
    have: list[dict[str, Any]] = list(meta.get("ownerReferences") or [])
    kept = [r for r in have if not _ours(r)]
    wanted = [*kept, names.fleet_owner_reference(fleet, fleet_uid)]
    if have == wanted:
        return None
    patch: dict[str, Any] = {"ownerReferences": wanted}
    if meta.get("resourceVersion") is not None:
        patch["resourceVersion"] = meta["resourceVersion"]
    return {"metadata": patch}


def last_member(members: Iterable[names.NodeRef], leaving_uid: str) -> bool:
    """Is the node `leaving_uid` the fleet's last? `members`: the fleet's MarketplaceNodes
    not being deleted (two deleted together are each the last: deleting twice is harmless)."""
    return all(m.uid == leaving_uid for m in members)


def objects(fleet: str, *, cert_manager: bool) -> tuple[tuple[Kind, str], ...]:
    """The fleet's shared objects by kind and name (the ConfigMap's policy shards and the
    auto BanList hang off it, and go with it). The Certificate and Issuer only where
    cert-manager is installed: elsewhere their kinds do not exist, and a cluster with
    cert-manager but without TLS fleets need not grant the operator more than it uses."""
    core = (
        (Kind.POLICY_CONFIGMAP, names.policy_configmap_name(fleet)),
        (Kind.FLEET_ADMIN, names.admin_secret_name(fleet)),
        (Kind.TLS_CA, names.tls_ca_secret_name(fleet)),
    )
    if not cert_manager:
        return core
    return (
        *core,
        (Kind.CERTIFICATE, names.fleet_tls_secret_name(fleet)),
        (Kind.ISSUER, names.ca_issuer_name(fleet)),
    )
