"""A peer's view of a node: one real signed peer-protocol request (`GET /p2p/v1/changes`,
the gossip operation) to a node's pod IP, and what its answer means for bans."""

from __future__ import annotations

import json
import time

import urllib3
from marketplace_node import signing
from marketplace_protocol.identity import Identity
from pod_client import PodSource

HTTP = urllib3.PoolManager(maxsize=16)
QUERY = "after=0&limit=1"
PATH = "/p2p/v1/changes"


def peer_request(
    ip: str, ident: Identity, *, source: PodSource | None = None
) -> tuple[int, str | None]:
    """One signed peer request, from a pod's own address if `source` is given (another
    node's: pod_client.py), else from the host; (HTTP status, error code or None)."""
    headers = signing.sign_request(
        ident, method="GET", path=PATH, query=QUERY, created=int(time.time())
    )
    if source is not None:
        status, body = source.get(ip, 7070, f"{PATH}?{QUERY}", headers)
        return status, (body or {}).get("code")
    resp = HTTP.request(
        "GET", f"http://{ip}:7070{PATH}?{QUERY}", headers=headers, timeout=3.0, retries=False
    )
    code = json.loads(resp.data).get("code") if resp.status >= 400 else None
    return resp.status, code


def banned(status: int, code: str | None) -> bool:
    return status == 403 and code == "peer_banned"
