"""The client's address behind trusted proxies (X-Forwarded-For), for the policy door.

Bans, rate limits and offences are keyed by the client's address. Behind a
balancer that address is the balancer's, unless the balancer says whose
request it relays. Only proxies listed in `trusted_proxies` are believed: the
header is read from the right (each proxy appends the address it received
from) and the first address that is not a trusted proxy is the client, as
nginx's `real_ip_recursive`. A header from any other sender is ignored, so a
client cannot name someone else (or escape its ban) by forging one.

Not aiohttp-remotes' `XForwardedStrict`: it answers 400 to an untrusted sender of
the header instead of ignoring it, matches trusted proxies hop by hop in a fixed
order, and rewrites scheme and host as well; what we need is this one function.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

Network = IPv4Network | IPv6Network
HEADER = "X-Forwarded-For"
MAX_HOPS = 16  # addresses read from the right; a longer chain is not a client's business


def client_address(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client of a request from `peer` carrying `forwarded_for` (every X-Forwarded-For
    value, in order): `peer` itself unless it is a trusted proxy; else the rightmost address
    of the header that is not one (the leftmost if all are). Malformed entries end the walk
    at the last address believed."""
    if not _trusted(peer, trusted):
        return peer
    hops = [part.strip() for value in forwarded_for for part in value.split(",")]
    client = peer
    for hop in reversed(hops[-MAX_HOPS:]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return client  # a proxy we trust wrote nothing readable: stop at what we know
        client = hop
        if not _trusted(hop, trusted):
            return hop
    return client


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def forwarded_middleware(trusted: Sequence[Network]) -> Middleware:
    """Replace `request.remote` with the client's address (place it before the door)."""
    networks = tuple(trusted)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not networks or HEADER not in request.headers:
            return await handler(request)
        peer = request.remote or ""
        client = client_address(peer, request.headers.getall(HEADER), networks)
        if client == peer:
            return await handler(request)
        return await handler(request.clone(remote=client))

    return middleware
