"""The Secrets and ConfigMaps that pods' volumes show, as the kubelet's watches last saw them.

Like the real kubelet's default `configMapAndSecretChangeDetectionStrategy: Watch`:
volume contents come from the per-object watches, not from a GET on every pod
sync. Only a key no watch has reported on yet (a pod that just started) costs
one GET, whose answer the watch then keeps current.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from local_kubelet.kube import JSON

ObjectKey = tuple[str, str, str]
"""(namespace, kind, name); kind is "secret" or "configmap"."""

Fetch = Callable[[ObjectKey], Awaitable[JSON | None]]
"""Read one object from the API server; None when it does not exist."""

_UNKNOWN: JSON = {}
_CONTENT_FIELDS = ("data", "binaryData", "stringData", "type")


def content(obj: JSON | None) -> tuple[object, ...] | None:
    """What a volume or an env var can show of a Secret or ConfigMap (pure): a change of
    owners, labels or annotations alone changes no file."""
    if obj is None:
        return None
    return tuple(obj.get(f) for f in _CONTENT_FIELDS)


class ObjectCache:
    """The latest object per key; None records that it does not exist.

    Entries live only while a watch keeps them current: the kubelet calls
    `forget` when it stops watching a key, so a later pod fetches afresh.
    """

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._objects: dict[ObjectKey, JSON | None] = {}

    def observe(self, key: ObjectKey, event: str, obj: JSON) -> bool:
        """Take a watch event ("ADDED" | "MODIFIED" | "DELETED") for `key`; whether what a
        pod can see of it (its existence and content, not its metadata) changed."""
        new = None if event == "DELETED" else obj
        old = self._objects.get(key, _UNKNOWN)
        self._objects[key] = new
        return old is _UNKNOWN or content(old) != content(new)

    def forget(self, key: ObjectKey) -> None:
        self._objects.pop(key, None)

    async def get(self, key: ObjectKey) -> JSON | None:
        """The watched object; a GET the first time, before its watch has reported."""
        if key in self._objects:
            return self._objects[key]
        obj = await self._fetch(key)
        # The watch may have reported while the GET was in flight: its event
        # is at least as new, so it is kept.
        return self._objects.setdefault(key, obj)
