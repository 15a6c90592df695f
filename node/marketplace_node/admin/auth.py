"""Bearer-token authentication of the admin API, compared in constant time.

Without a configured token the admin API refuses everything: an operator
that forgot the Secret gets 401s it can see, never an open admin port.

The token file (a mounted Secret) is followed as it changes: the kubelet swaps
the volume's files when the Secret is edited or recreated, and a node that kept
the token it started with would refuse the operator from then on. After a
change the previous token is still accepted for a bounded overlap, so that an
operator that has not yet read the new Secret keeps working (`TokenFile`).
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from marketplace_protocol import errors
from pydantic import SecretStr

from marketplace_node import http_errors

CHALLENGE: Final = 'Bearer realm="marketplace-admin"'
TOKEN_MAX: Final = 4_096


def presented_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    if not authorization or len(authorization) > TOKEN_MAX:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(presented: str | None, expected: SecretStr | None) -> bool:
    """Constant-time comparison; False whenever either side is missing."""
    if expected is None:
        return False
    secret = expected.get_secret_value().encode()
    # Compare even when nothing was presented, so timing does not tell the two cases apart.
    candidate = (presented or "").encode()
    return hmac.compare_digest(candidate, secret) and presented is not None and bool(secret)


logger = logging.getLogger(__name__)
Accepted = Callable[[], Sequence[SecretStr]]
"""The tokens the admin API accepts right now (none: it refuses every call)."""


def fixed(token: SecretStr | None) -> Accepted:
    """One token that never changes (tests and local runs)."""
    tokens = [token] if token is not None and token.get_secret_value() else []
    return lambda: tokens


class TokenFile:
    """The admin token as its file holds it now, plus the one before for `overlap` seconds.

    One `stat` per admin call tells whether the file changed (the kubelet replaces it by
    a symlink swap, so its inode and mtime move); only then is it read again. An
    unreadable or empty file keeps what was read last: a Secret deleted and recreated
    is seen as its new token, never as a moment with none.
    """

    def __init__(
        self, path: Path, *, overlap: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._path = path
        self._overlap = overlap
        self._clock = clock
        self._seen: tuple[int, int, int] | None = None
        self._current: SecretStr | None = None
        self._previous: SecretStr | None = None
        self._previous_until = 0.0
        self.accepted()

    def accepted(self) -> list[SecretStr]:
        self._follow()
        tokens = [self._current] if self._current is not None else []
        if self._previous is not None and self._clock() < self._previous_until:
            tokens.append(self._previous)
        return tokens

    def _follow(self) -> None:
        try:
            st = os.stat(self._path)
        except OSError:
            return
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if seen == self._seen:
            return
        try:
            text = self._path.read_text().strip()
        except OSError:
            return
        self._seen = seen
        if not text or (self._current is not None and text == self._current.get_secret_value()):
            return
        if self._current is not None:
            self._previous, self._previous_until = self._current, self._clock() + self._overlap
            logger.info(
                "admin token file changed; the previous token is accepted for %.0f s more",
                self._overlap,
            )
        self._current = SecretStr(text)


def accepts(accepted: Accepted, presented: str | None) -> bool:
    """Whether `presented` is one of the accepted tokens; every one is compared."""
    tokens: Sequence[SecretStr | None] = accepted() or [None]  # compare even with none
    return any([token_matches(presented, token) for token in tokens])


def bearer_auth(accepted: Accepted) -> Middleware:
    """Middleware answering 401 `unauthenticated` (with a Bearer challenge) without a token
    it accepts."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        presented = presented_token(request.headers.get("Authorization"))
        if not accepts(accepted, presented):
            refusal = errors.Unauthenticated("a valid admin bearer token is required")
            response = http_errors.error_response(refusal)
            response.headers["WWW-Authenticate"] = CHALLENGE
            return response
        return await handler(request)

    return middleware
