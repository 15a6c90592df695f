"""A peer's view of a node: one real signed peer-protocol request (`GET /p2p/v1/changes`,
the gossip operation) to a node's pod IP, and what its answer means for bans."""

from __future__ import annotations

import json
import time

import urllib3
from marketplace_node import signing
from marketplace_protocol.identity import Identity

HTTP = urllib3.PoolManager(maxsize=16)
QUERY = "after=0&limit=1"
PATH = "/p2p/v1/changes"


def peer_request(ip: str, ident: Identity, *, source: str | None = None) -> tuple[int, str | None]:
    """One signed peer request, from connection address `source` if given (a loopback pod IP
    on the local cluster: a node's own address); (HTTP status, error code or None)."""
    headers = signing.sign_request(
        ident, method="GET", path=PATH, query=QUERY, created=int(time.time())
    )
    pool = HTTP if source is None else urllib3.PoolManager(source_address=(source, 0))
    resp = pool.request(
        "GET", f"http://{ip}:7070{PATH}?{QUERY}", headers=headers, timeout=3.0, retries=False
    )
    code = json.loads(resp.data).get("code") if resp.status >= 400 else None
    return resp.status, code


def banned(status: int, code: str | None) -> bool:
    return status == 403 and code == "peer_banned"
