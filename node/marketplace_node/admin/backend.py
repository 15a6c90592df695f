"""An `AdminBackend` assembled from the parts that already own each answer.

Policy and local bans come from the `PolicyEnforcer`, drain from the
`DrainCoordinator`; what only the node core knows (its status, what to do
with the fleet's members) it passes in as two callables. This keeps the
seam between the admin API and the node core to those two functions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from marketplace_protocol.admin import (
    DrainRequest,
    DrainStatus,
    LocalBans,
    Members,
    NodeStatus,
    PolicyApplied,
    PolicyDocument,
)

from marketplace_node.drain import DrainCoordinator
from marketplace_node.policy.enforcer import PolicyEnforcer


class NodeAdmin:
    """Implements `admin.routes.AdminBackend`."""

    def __init__(
        self,
        *,
        enforcer: PolicyEnforcer,
        drain: DrainCoordinator,
        status: Callable[[], Awaitable[NodeStatus]],
        set_members: Callable[[Members], Awaitable[None]],
        on_policy: Callable[[PolicyApplied], Awaitable[None]] | None = None,
    ) -> None:
        self._enforcer = enforcer
        self._drain = drain
        self._status = status
        self._set_members = set_members
        self._on_policy = on_policy

    async def status(self) -> NodeStatus:
        return await self._status()

    async def apply_policy(self, doc: PolicyDocument) -> PolicyApplied:
        applied = await self._enforcer.apply_async(doc)
        if self._on_policy is not None:
            await self._on_policy(applied)
        return applied

    async def local_bans(self) -> LocalBans:
        return self._enforcer.local_bans()

    async def set_members(self, members: Members) -> None:
        await self._set_members(members)

    async def drain(self, request: DrainRequest) -> DrainStatus:
        return self._drain.drain(request.timeout_seconds)

    async def drain_status(self) -> DrainStatus:
        return self._drain.status()
