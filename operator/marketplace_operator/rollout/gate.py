"""The replacement gate the node reconcile consults before it replaces a stale pod itself.

Replacing a pod because its template changed (or a restart was requested) belongs to the
fleet rollout alone: it is paced by the planner across the whole fleet, recorded in the
MarketplaceFleet's status before anything happens, and drained, settled and deleted by
handlers/rollout.py. A second actor replacing pods on its own would break the budget and
the crash-safety of that record, so the gate always defers. The node reconcile keeps what
costs the fleet nothing: creating a missing pod (with the current template, which is how
every replacement gets its new pod) and removing a pod that ended (Failed/Succeeded).
"""

from __future__ import annotations

from collections.abc import Sequence

from marketplace_operator.reconcile.fleet import MemberPod


def may_replace(fleet: Sequence[MemberPod], node: str) -> bool:
    """May the node reconcile replace `node`'s stale pod itself? No: the rollout does it."""
    del fleet, node  # the answer does not depend on them: see the module docstring
    return False
