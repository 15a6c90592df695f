"""List-then-watch loops that keep a callback informed of a set of API objects."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from local_kubelet.kube import JSON, Kube, KubeError

log = logging.getLogger(__name__)

Handler = Callable[[str, JSON], Awaitable[None]]
"""Called with ("ADDED" | "MODIFIED" | "DELETED", object)."""


async def inform(
    kube: Kube,
    path: str,
    handler: Handler,
    *,
    params: Mapping[str, str] | None = None,
    retry_seconds: float = 1.0,
    on_list: Callable[[list[JSON]], None] | None = None,
) -> None:
    """Forever: list (every item as ADDED, vanished ones as DELETED), then watch.

    Relists after a 410 Gone or any error, so a restarted API server or an
    expired resourceVersion only delays events, never loses them. `on_list`
    sees each whole listing before its events.
    """
    query = dict(params or {})
    known: dict[str, JSON] = {}
    while True:
        try:
            listing = await kube.request("GET", path, params=query or None)
            items = {item["metadata"]["uid"]: item for item in listing.get("items", [])}
            if on_list is not None:
                on_list(list(items.values()))
            for uid in set(known) - set(items):
                await handler("DELETED", known.pop(uid))
            for uid, item in items.items():
                known[uid] = item
                await handler("ADDED", item)
            version = listing["metadata"]["resourceVersion"]
            while True:
                async for kind, obj in kube.watch(path, resource_version=version, params=query):
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if kind == "BOOKMARK":
                        continue
                    uid = obj["metadata"]["uid"]
                    if kind == "DELETED":
                        known.pop(uid, None)
                    else:
                        known[uid] = obj
                    await handler(kind, obj)
        except KubeError as exc:
            if exc.status == 403:
                # The Node authorizer grants a Secret only while a pod of this
                # node uses it: expected around pod creation and deletion.
                log.info("watch %s forbidden for now; retrying", path)
                await asyncio.sleep(retry_seconds * 2)
            elif not exc.gone:
                log.warning("watch %s failed (%s); relisting in %.0fs", path, exc, retry_seconds)
                await asyncio.sleep(retry_seconds)
