"""aiohttp routes of the client API (`/api/v1`), the peer protocol (`/p2p/v1`) and the probes.

Handlers only parse, call the service and serialise. One middleware (`door`)
does, in order: signature verification for `/p2p/` requests (the sender's
peer id is then `request[PEER]`), the policy door (bans, rate limits) with
the route's `Operation`, for peers the fleet's peering rule (`policy.peering`: a
non-member only from its allowed networks), in-flight accounting, and the translation of every
`NodeError`/validation error into an `ErrorBody` with a stable code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import pydantic
from aiohttp import web
from marketplace_protocol.admin import Operation
from marketplace_protocol.errors import (
    Blocked,
    ClockSkewed,
    Draining,
    IntegrityError,
    InvalidInput,
    NodeError,
    PayloadTooLarge,
    StaleRequest,
    Unauthenticated,
)

from marketplace_node import gossip, limits, replication, signing, sync
from marketplace_node.admin import body
from marketplace_node.membership import Membership
from marketplace_node.model import (
    PACKAGE_KINDS,
    QUERY_PARAMETERS,
    Announcement,
    Hello,
    Model,
    NameRecord,
    NodeInfo,
    PackageMeta,
    PeerView,
    Query,
    ReplicateRequest,
)
from marketplace_node.policy.escalation import Offence
from marketplace_node.search import matches
from marketplace_node.service import ANNOUNCEMENT_ID, GOSSIP_REACHED, NodeService
from marketplace_node.subscribe import Subscriber

logger = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SERVICE = web.AppKey("service", NodeService)
MEMBERSHIP = web.AppKey("membership", Membership)
PEER = web.RequestKey("peer", str)
SSE_KEEPALIVE_SECONDS = 15.0

# route name → the operation the policy door charges it to; routes not listed pass freely
OPERATIONS: dict[str, Operation] = {
    "put_blob": Operation.PUBLISH,
    "publish": Operation.PUBLISH,
    "post_record": Operation.PUBLISH,
    "get_name": Operation.SEARCH,
    "resolve": Operation.SEARCH,
    "get_package": Operation.SEARCH,
    "get_content": Operation.FETCH,
    "search": Operation.SEARCH,
    "search_post": Operation.SEARCH,
    "subscribe": Operation.SUBSCRIBE,
    "peers": Operation.SEARCH,
    "status": Operation.SEARCH,
    "p2p_announce": Operation.GOSSIP,
    "p2p_hello": Operation.GOSSIP,
    "p2p_changes": Operation.GOSSIP,
    "p2p_content": Operation.FETCH,
    "p2p_replicate": Operation.FETCH,
}
LONG_LIVED = frozenset({"subscribe"})


def json_response(model: Model | Sequence[Model], status: int = 200) -> web.Response:
    if isinstance(model, Model):
        body = model.__pydantic_serializer__.to_json(model, by_alias=True)
    else:
        body = (
            b"["
            + b",".join(m.__pydantic_serializer__.to_json(m, by_alias=True) for m in model)
            + b"]"
        )
    return web.Response(body=body, status=status, content_type="application/json")


@web.middleware
async def door(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate peers, admit through the policy door, track drain, count; errors propagate
    to `http_errors.error_middleware`, which renders them."""
    route = request.match_info.route.name or ""
    op = OPERATIONS.get(route)
    if op is None:
        return await handler(request)
    service = request.app[SERVICE]
    started = time.perf_counter()
    outcome = "ok"
    peer_route = route.startswith("p2p_")
    try:
        peer = None
        if peer_route:
            service.enforcer.screen(request.remote or "", op)  # banned networks pay nothing more
            peer = await _authenticate(request, service)
        service.enforcer.admit(peer, request.remote or "", op, copy=_is_copy(request, route, peer))
        if peer_route:  # peers keep syncing and fetching from a draining node (hand-off)
            service.check_peer(peer, request.remote or "")  # after bans: a ban wins
            return await handler(request)
        if route in LONG_LIVED:
            if service.draining:
                raise Draining("this node is draining; retry on another node")
            return await handler(request)
        with service.drain.track():
            return await handler(request)
    except pydantic.ValidationError as exc:
        outcome = InvalidInput.code
        offence = Offence.INVALID_DATA if peer_route else Offence.MALFORMED_REQUEST
        service.enforcer.record(request.get(PEER), request.remote or "", offence)
        raise InvalidInput(body.describe(exc)) from None
    except NodeError as exc:
        outcome = exc.code
        raise
    finally:
        service.metrics.observe(op, outcome, time.perf_counter() - started)


def _is_copy(request: web.Request, route: str, peer: str | None) -> bool:
    """A copy between nodes: a `replicate`, or a peer's fetch of bytes we asked it to copy.
    Charged to the copy budget (`limits.COPY_LIMIT`), so clients' load never refuses it."""
    if peer is None:
        return False
    if route == "p2p_replicate":
        return True
    return route == "p2p_content" and request.app[SERVICE].invited(
        peer, request.match_info["digest"]
    )


async def _authenticate(request: web.Request, service: NodeService) -> str:
    declared = request.content_length
    if declared is not None and declared > limits.ANNOUNCE_BODY_MAX:
        raise PayloadTooLarge("peer request body too large")
    body = await request.read()
    if len(body) > limits.ANNOUNCE_BODY_MAX:
        raise PayloadTooLarge("peer request body too large")
    try:
        peer = signing.verify_request(
            method=request.method,
            path=request.rel_url.raw_path,
            query=request.rel_url.raw_query_string,
            headers=request.headers,
            body=body,
            now_wall=service.clock.wall(),
            replay=service.replay,
            clocks=service.peer_clocks,
        )
    except StaleRequest:  # signed by the peer: a clock apart, not an offence
        service.metrics.stale_requests.inc()
        if service.peer_clocks.skewed():  # most peers say it is our clock
            raise ClockSkewed(
                "this node's wall clock is off from its peers'",
                details={"offsetSeconds": f"{service.peer_clocks.offset():.0f}"},
            ) from None
        raise
    except Unauthenticated:
        service.enforcer.record(None, request.remote or "", Offence.BAD_SIGNATURE)
        raise
    request[PEER] = peer
    service.peers.touch(peer, service.clock.monotonic())
    return peer


# -- probes ---------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def readyz(request: web.Request) -> web.Response:
    ready = request.app[SERVICE].ready()
    return web.Response(text="ready" if ready else "not ready", status=200 if ready else 503)


# -- client API -------------------------------------------------------------------


async def put_blob(request: web.Request) -> web.Response:
    digest = request.match_info["digest"]
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise InvalidInput("digest must be 64 lower-case hex characters")
    try:
        size = await request.app[SERVICE].blobs.write(
            request.content.iter_chunked(256 * 1024),
            digest=digest,
            max_size=limits.CONTENT_MAX_BYTES,
            expected=request.content_length or 0,
        )
    except IntegrityError as exc:  # the client's upload, not a peer's: its mistake, a 400
        raise InvalidInput("the body does not hash to the digest in the path") from exc
    return web.json_response({"digest": digest, "size": size}, status=201)


async def publish(request: web.Request) -> web.Response:
    """An author-signed package: 201 when new and held by `minInSync` nodes, 200 for an
    identical retry (which completes the copies a failed attempt lacked), also one the
    author signed again later: the answer is the package stored first."""
    service = request.app[SERVICE]
    meta = PackageMeta.model_validate_json(await request.read())
    package, announcement = service.prepare_publish(meta)
    await replication.acknowledge(service, package, announcement)
    return json_response(service.view(package.id), status=201 if announcement else 200)


async def post_record(request: web.Request) -> web.Response:
    record = NameRecord.model_validate_json(await request.read())
    if record.name != request.match_info["name"]:
        raise InvalidInput("the record names another name than the path")
    return json_response(await request.app[SERVICE].record(record), status=201)


async def get_name(request: web.Request) -> web.Response:
    return json_response(request.app[SERVICE].catalogue.owners(request.match_info["name"]))


async def resolve(request: web.Request) -> web.Response:
    """`?want=` an exact version, `latest` (default) or an npm range such as `^1.2`."""
    service = request.app[SERVICE]
    want = request.rel_url.query.get("want", "latest")
    if not 1 <= len(want) <= limits.VERSION_MAX:
        raise InvalidInput("want is 1 to VERSION_MAX characters")
    return json_response(service.resolve(request.match_info["name"], want))


async def get_package(request: web.Request) -> web.Response:
    return json_response(request.app[SERVICE].view(request.match_info["id"]))


async def get_content(request: web.Request) -> web.FileResponse:
    path = await request.app[SERVICE].content_path(request.match_info["id"])
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})


def query_from_params(request: web.Request) -> Query:
    params = request.rel_url.query
    fields: dict[str, object] = {}
    for param, (name, many) in QUERY_PARAMETERS.items():
        if param in params:
            fields[name] = params.getall(param) if many else params[param]
    return Query.model_validate(fields)


async def search(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    query = query_from_params(request)
    async with service.enforcer.pending():
        return json_response(service.search(query))


async def search_post(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    query = Query.model_validate_json(await request.read())
    async with service.enforcer.pending():
        return json_response(service.search(query))


async def peers(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    now = service.clock.monotonic()
    views = [
        PeerView(
            peer_id=p.peer_id,
            address=p.address,
            last_seen_seconds_ago=round(max(0.0, now - p.last_seen), 3),
            reputation=service.reputation.score(p.peer_id),
            successes=service.reputation.get(p.peer_id).successes,
            failures=service.reputation.get(p.peer_id).failures,
        )
        for p in sorted(service.peers.all(), key=lambda p: p.peer_id)
    ]
    return json_response(views)


async def status(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    info = NodeInfo(
        peer_id=service.identity.peer_id,
        address=service.settings.public_url,
        fleet=service.settings.fleet,
        ready=service.ready(),
        draining=service.draining,
        packages=len(service.catalogue),
        peers=len(service.peers),
        last_seq=service.last_seq,
    )
    return json_response(info)


async def subscribe(request: web.Request) -> web.StreamResponse:
    """Server-sent events of package announcements matching the query, resumable by seq.

    The subscriber is registered before the replay, so nothing published
    during the replay is lost; live events at or below the replayed cursor
    are skipped, so nothing is sent twice.
    """
    service = request.app[SERVICE]
    query = query_from_params(request)
    raw_cursor = request.headers.get("Last-Event-ID") or request.rel_url.query.get("cursor") or "0"
    if not raw_cursor.isdigit() or len(raw_cursor) > 19 or int(raw_cursor) > limits.SEQ_MAX:
        raise InvalidInput("cursor must be a change sequence number")
    sub = service.hub.open(query)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    try:
        await response.prepare(request)
        last = await _replay(response, service, query, int(raw_cursor))
        await _follow(response, sub, last)
    finally:
        service.hub.close(sub)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


async def _replay(
    response: web.StreamResponse, service: NodeService, query: Query, after: int
) -> int:
    """Send the matching packages of the durable log after `after`; the last seq read."""
    last = after
    while True:
        rows = await service.store.changes_after(last, limits.SYNC_PAGE_MAX)
        for seq, raw in rows:
            ann = Announcement.model_validate_json(raw)
            meta = ann.package if ann.kind in PACKAGE_KINDS else None
            if meta is not None and service.catalogue.get(meta.id) is None:
                meta = None  # refused or superseded since: not served
            if meta is not None and matches(query, meta, service.catalogue.downloads(meta.id)):
                await _package_event(response, seq, meta)
            last = seq
        if len(rows) < limits.SYNC_PAGE_MAX:
            return last


async def _follow(response: web.StreamResponse, sub: Subscriber, last: int) -> None:
    """Send live events until the hub ends the stream (overflow, drain), with keep-alives."""
    while True:
        try:
            item = await asyncio.wait_for(sub.queue.get(), SSE_KEEPALIVE_SECONDS)
        except TimeoutError:
            await response.write(b": keepalive\n\n")
            continue
        if item is None:
            reason = "overflow" if sub.overflowed else "closing"
            await _event(response, last, reason, {"cursor": last})
            return
        seq, meta = item
        if seq > last:
            await _package_event(response, seq, meta)
            last = seq


async def _package_event(response: web.StreamResponse, seq: int, meta: PackageMeta) -> None:
    data = {
        "id": meta.id,
        "author": meta.publisher,
        "signedBy": meta.signed_by,
        "package": meta.model_dump(mode="json", by_alias=True),
    }
    await _event(response, seq, "package", data)


async def _event(
    response: web.StreamResponse, seq: int, kind: str, data: Mapping[str, object]
) -> None:
    payload = json.dumps(data, separators=(",", ":"))
    await response.write(f"id: {seq}\nevent: {kind}\ndata: {payload}\n\n".encode())


# -- peer protocol ------------------------------------------------------------------


async def p2p_announce(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    sender = request[PEER]
    raw = await request.read()  # already read by the door's signature check
    service.metrics.gossip_bytes.labels("in").inc(len(raw))
    if request.headers.get(ANNOUNCEMENT_ID, "") in service.seen:
        # An unverified hint is safe here: it can only make us skip a body whose id we
        # already hold; an unseen or lying id falls through to full verification.
        service.metrics.announcements.labels("duplicate").inc()
        return web.json_response({"accepted": False}, status=202)
    ann = Announcement.model_validate_json(raw)
    try:
        reached = gossip.parse_reached(request.headers.get(GOSSIP_REACHED, ""))
        accepted = await service.accept(ann, sender=sender, reached=reached)
    except Unauthenticated:
        service.enforcer.record(sender, request.remote or "", Offence.BAD_SIGNATURE)
        raise
    return web.json_response({"accepted": accepted}, status=202)


async def p2p_hello(request: web.Request) -> web.Response:
    hello = Hello.model_validate_json(await request.read())
    return json_response(request.app[MEMBERSHIP].reply(request[PEER], hello, request.remote or ""))


async def p2p_changes(request: web.Request) -> web.Response:
    params = request.rel_url.query
    try:
        after = int(params.get("after", "0"))
        limit = int(params.get("limit", str(limits.SYNC_PAGE_MAX)))
    except ValueError as exc:
        raise InvalidInput("after and limit must be integers") from exc
    if not 0 <= after <= limits.SEQ_MAX or not 1 <= limit <= limits.SYNC_PAGE_MAX:
        raise InvalidInput("0 <= after <= SEQ_MAX and 1 <= limit <= SYNC_PAGE_MAX")
    return json_response(await sync.serve(request.app[SERVICE], after, limit))


async def p2p_content(request: web.Request) -> web.StreamResponse:
    digest = request.match_info["digest"]
    service = request.app[SERVICE]
    blobs = service.blobs
    if len(digest) != 64 or not blobs.has(digest):
        raise web.HTTPNotFound(reason="no such content")
    if not service.serves_digest(digest):
        raise Blocked("this content was taken down by the fleet's policy")
    return web.FileResponse(
        blobs.path(digest), headers={"Content-Type": "application/octet-stream"}
    )


async def p2p_replicate(request: web.Request) -> web.Response:
    """Take a copy (hand-off, publish, repair): answer once we hold it verified and fsynced."""
    req = ReplicateRequest.model_validate_json(await request.read())
    await request.app[SERVICE].replicate(
        req.package_id, req.announcement, req.content, sender=request[PEER]
    )
    return web.json_response({"replicated": True})


def add_probes(app: web.Application) -> None:
    """The kubelet's probes, on the private listener."""
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")


def add_routes(app: web.Application) -> None:
    """The client API and the peer protocol, on the public listener."""
    r = app.router
    r.add_put("/api/v1/blobs/{digest}", put_blob, name="put_blob")
    r.add_post("/api/v1/packages", publish, name="publish")
    r.add_get("/api/v1/packages/{id}", get_package, name="get_package")
    r.add_post("/api/v1/names/{name}/records", post_record, name="post_record")
    r.add_get("/api/v1/names/{name}", get_name, name="get_name")
    r.add_get("/api/v1/names/{name}/resolve", resolve, name="resolve")
    r.add_get("/api/v1/packages/{id}/content", get_content, name="get_content")
    r.add_get("/api/v1/search", search, name="search")
    r.add_post("/api/v1/search", search_post, name="search_post")
    r.add_get("/api/v1/subscribe", subscribe, name="subscribe")
    r.add_get("/api/v1/peers", peers, name="peers")
    r.add_get("/api/v1/status", status, name="status")
    r.add_post("/p2p/v1/announce", p2p_announce, name="p2p_announce")
    r.add_post("/p2p/v1/hello", p2p_hello, name="p2p_hello")
    r.add_get("/p2p/v1/changes", p2p_changes, name="p2p_changes")
    r.add_get("/p2p/v1/content/{digest}", p2p_content, name="p2p_content")
    r.add_post("/p2p/v1/replicate", p2p_replicate, name="p2p_replicate")
