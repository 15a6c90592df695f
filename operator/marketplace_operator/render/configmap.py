"""The fleet's policy ConfigMap skeleton and its `members.json`.

The policy content (`policy.json`) is the policy engineer's (render/policy.py); this module
owns the object itself and the members list, which the node reads as bootstrap peers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from marketplace_protocol.admin import Member, Members

from marketplace_operator.render import names


def members_document(members: Iterable[Member]) -> Members:
    """Members sorted by name, so the same fleet always renders the same bytes."""
    return Members(members=sorted(members, key=lambda m: (m.name, m.address)))


def members_json(members: Iterable[Member]) -> str:
    return members_document(members).model_dump_json(by_alias=True, exclude_none=True)


def policy_configmap(ref: names.NodeRef, *, members: str, fleet_uid: str | None) -> dict[str, Any]:
    """Owned like the admin Secret: by the MarketplaceFleet."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": names.fleet_metadata(
            names.policy_configmap_name(ref.fleet),
            namespace=ref.namespace,
            fleet=ref.fleet,
            fleet_uid=fleet_uid,
        ),
        "data": {names.MEMBERS_KEY: members},
    }
