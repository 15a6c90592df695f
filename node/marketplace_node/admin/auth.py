"""Bearer-token authentication of the admin API, compared in constant time.

Without a configured token the admin API refuses everything: an operator
that forgot the Secret gets 401s it can see, never an open admin port.
"""

from __future__ import annotations

import hmac
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import SecretStr

from marketplace_node import errors, http_errors

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


def bearer_auth(token: SecretStr | None) -> Middleware:
    """Middleware answering 401 `unauthenticated` (with a Bearer challenge) without the token."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        presented = presented_token(request.headers.get("Authorization"))
        if not token_matches(presented, token):
            refusal = errors.Unauthenticated("a valid admin bearer token is required")
            response = http_errors.error_response(refusal)
            response.headers["WWW-Authenticate"] = CHALLENGE
            return response
        return await handler(request)

    return middleware
