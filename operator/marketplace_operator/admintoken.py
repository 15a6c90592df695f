"""The operator's one cache of fleet admin tokens, and the overlap that makes rotation safe.

A fleet's token lives in its `<fleet>-admin` Secret. The operator reads it once per
version of that Secret (uid and resourceVersion, as the watch shows it), so an edited,
deleted-and-recreated or new fleet's Secret is read again, and nothing else is.

When the token changes, nodes see the new one only when their kubelet next syncs the
mounted volume (seconds locally, up to a minute or two on a real cluster). Until then a
node refuses the new token; so for `overlap` seconds the operator also knows the token
before, and `NodeClient` tries it after a 401 (`alternatives`). Nodes do the same from
their side: they accept their previous token for a bounded overlap after the file
changes (marketplace_node.admin.auth.TokenFile).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from marketplace_operator import errors

Reader = Callable[[str, str], Awaitable[str | None]]
"""(namespace, fleet) -> the token in the fleet's Secret now; None when it is gone."""


@dataclass
class _Known:
    version: tuple[str, str]  # the Secret's (uid, resourceVersion) when read
    token: str
    previous: str | None = None
    previous_until: float = 0.0


def secret_version(secret: Mapping[str, Any]) -> tuple[str, str]:
    meta = secret.get("metadata") or {}
    return str(meta.get("uid", "")), str(meta.get("resourceVersion", ""))


class AdminTokens:
    def __init__(
        self, read: Reader, *, overlap: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._read = read
        self._overlap = overlap
        self._clock = clock
        self._known: dict[tuple[str, str], _Known] = {}

    async def get(self, namespace: str, fleet: str, seen: Mapping[str, Any] | None) -> str:
        """The fleet's current token; `seen` is its Secret as the watch has it (None: absent,
        which raises NotFound: the node's reconcile creates it)."""
        if seen is None:
            raise errors.NotFound(f"Secret {fleet}-admin not there yet")
        key = (namespace, fleet)
        known = self._known.get(key)
        version = secret_version(seen)
        if known is not None and known.version == version:
            return known.token
        token = await self._read(namespace, fleet)
        if token is None:
            raise errors.NotFound(f"Secret {fleet}-admin vanished")
        self._remember(key, version, token)
        return token

    def _remember(self, key: tuple[str, str], version: tuple[str, str], token: str) -> None:
        known = self._known.get(key)
        if known is None:
            self._known[key] = _Known(version, token)
        elif known.token == token:
            known.version = version
        else:
            until = self._clock() + self._overlap
            self._known[key] = _Known(version, token, previous=known.token, previous_until=until)

    def alternatives(self, token: str) -> list[str]:
        """Other tokens of the same fleet worth a try after `token` got a 401: the one
        before it (or after it) while the overlap lasts."""
        now = self._clock()
        for known in self._known.values():
            if known.previous is None or now >= known.previous_until:
                continue
            if token == known.token:
                return [known.previous]
            if token == known.previous:
                return [known.token]
        return []

    def forget(self, namespace: str, fleet: str) -> None:
        """The fleet is gone: nothing of it is kept."""
        self._known.pop((namespace, fleet), None)
