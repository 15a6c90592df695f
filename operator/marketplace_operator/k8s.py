"""THE Kubernetes API adapter: one asyncio ApiClient, plain dicts in and out.

Every call is a coroutine on the operator's event loop: the client is `kubernetes.aio`
(shipped inside the `kubernetes` package since 37.0), so no thread pool sits between
the operator and the API server. Its `ApiException` and aiohttp's errors never leave
this module; they become `errors.KubeError` subclasses. `BlockingKube` is the same
adapter for synchronous callers (tests, benchmarks, tools), never for the operator.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import aiohttp
import kopf
import orjson
from kubernetes.aio import client, config

from marketplace_operator import errors
from marketplace_operator.model.common import GROUP, VERSION

T = TypeVar("T")
P = ParamSpec("P")

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
FIELD_MANAGER = "marketplace-operator"
CONNECTIONS = 16
"""Concurrent requests to the API server; more wait for a free connection. Twenty nodes
starting make bursts of about forty calls: unbounded, each burst opened (and TLS
handshook) as many connections, for more CPU and memory and no faster start-up.

They wait in `Kube.request`, before their timeout starts: aiohttp counts the wait for a
pooled connection against the request's timeout, so 300 nodes starting (a thousand calls
queued behind 16 connections) timed out by the hundred without the API server being
slow, and each timeout doubled a node's backoff (issue 15)."""


KOPF_CONNECTIONS = 32
"""kopf's own requests to the API server (its patches of our objects, Events) at once."""
WATCHES_PER_NAMESPACE = 16
"""More than the kinds kopf watches in one namespace (ten today): each watch holds one
connection of kopf's pool for as long as it streams."""


def kopf_connection_limit(namespaces: int | None) -> int | None:
    """The size of kopf's pool when it watches `namespaces` namespaces (1: cluster-wide);
    None (kopf's own pool, unbounded) when their number is not known (patterns)."""
    if namespaces is None:
        return None
    return KOPF_CONNECTIONS + WATCHES_PER_NAMESPACE * max(1, namespaces)


def kopf_session(info: kopf.ConnectionInfo, *, limit: int) -> kopf.AiohttpSession:
    """kopf's connection to the API server (watches, its patches, Events) with kopf's own
    credentials, on a pool of at most `limit` connections.

    kopf's default pool is unbounded: each request of its per-object workers that finds
    no idle connection opens one. 100 MarketplaceNodes created at once were 102 TLS
    connections (each with a 128 KiB read buffer of asyncio's and OpenSSL's state, kept
    15 s), and at 1,000 nodes on a slow API server about 1,900: most of the operator's
    768 MiB (issue 15). Beyond `limit`, a request waits for a connection (within kopf's
    request timeout, 5 minutes)."""
    connector = aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context())
    session = aiohttp.ClientSession(
        connector=connector,
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
        aiohttp_session=session,
    )


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the REST API."""

    plural: str
    group: str = ""
    version: str = "v1"
    namespaced: bool = True

    def path(self, namespace: str, name: str | None = None, sub: str | None = None) -> str:
        """REST path; `namespace` is ignored for cluster-scoped resources."""
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        scope = f"/namespaces/{namespace}" if self.namespaced else ""
        path = f"{base}{scope}/{self.plural}"
        if name is not None:
            path += f"/{name}"
        if sub is not None:
            path += f"/{sub}"
        return path


PODS = Resource("pods")
SERVICES = Resource("services")
PVCS = Resource("persistentvolumeclaims")
SECRETS = Resource("secrets")
CONFIGMAPS = Resource("configmaps")
MNODES = Resource("marketplacenodes", GROUP, VERSION)
STORAGECLASSES = Resource("storageclasses", "storage.k8s.io", "v1", namespaced=False)
FLEETS = Resource("marketplacefleets", GROUP, VERSION)
PDBS = Resource("poddisruptionbudgets", "policy", "v1")
ENDPOINTSLICES = Resource("endpointslices", "discovery.k8s.io", "v1")
ISSUERS = Resource("issuers", "cert-manager.io", "v1")
CERTIFICATES = Resource("certificates", "cert-manager.io", "v1")
NODES = Resource("nodes", namespaced=False)


def translate(status: int, body: bytes | str | None) -> errors.KubeError:
    """An API server's error answer as our typed error (the kubectl plugin's too)."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else (body or "")
    try:
        message = str(orjson.loads(text).get("message", text))
    except (ValueError, AttributeError):
        message = text[:500]
    kind: type[errors.KubeError]
    if status == 404:
        kind = errors.NotFound
    elif status == 409 and "already exists" in message:
        kind = errors.AlreadyExists
    elif status == 409:
        kind = errors.Conflict
    elif status in {400, 422}:
        kind = errors.Invalid
    elif status == 429 or status >= 500:
        kind = errors.Unavailable
    else:
        kind = errors.KubeError
    return kind(message, status=status)


class Kube:
    """The operator's only door to the API server."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        timeout: float = 10.0,
        on_unavailable: Callable[[str], None] | None = None,
        connections: int = CONNECTIONS,
    ) -> None:
        self._api = api
        self._timeout = timeout
        self._slots = asyncio.Semaphore(connections)  # the pool's size: see CONNECTIONS
        # Told the verb of every call the API server did not answer (no connection, a
        # timeout, 429 or 5xx): an API server or etcd outage shows in the operator's
        # metrics, where nothing else can record it while it lasts.
        self._on_unavailable = on_unavailable or (lambda _verb: None)

    @classmethod
    async def from_environment(
        cls,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - not this call's: each later request's
        kubeconfig: str | None = None,
        connections: int = CONNECTIONS,
        on_unavailable: Callable[[str], None] | None = None,
    ) -> Kube:
        """`kubeconfig` if given, else in-cluster config if present, else KUBECONFIG.

        The HTTP session opens on the first call, on the loop that makes it."""
        configuration = client.Configuration()
        configuration.connection_pool_maxsize = connections
        # kubernetes.aio's session trusts the environment: aiohttp then reads ~/.netrc in a
        # thread for every call without credentials of its own (ours are client
        # certificates or a bearer header): 7 % of the operator's CPU and a thread hop per
        # call at 300 nodes (issue 15). kopf's own session does not trust it either (its
        # default), so proxies from the environment were never the operator's way out.
        configuration.client_session_kwargs = {"trust_env": False}
        if kubeconfig is None:
            try:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                return cls(
                    client.ApiClient(configuration),
                    timeout=timeout,
                    on_unavailable=on_unavailable,
                    connections=connections,
                )
            except config.ConfigException:
                pass  # not in a pod: KUBECONFIG
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
        return cls(
            client.ApiClient(configuration),
            timeout=timeout,
            on_unavailable=on_unavailable,
            connections=connections,
        )

    async def close(self) -> None:
        await self._api.close()  # type: ignore[no-untyped-call]

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
        answer: bool = True,
    ) -> dict[str, Any]:
        """One REST call; the decoded JSON answer (`answer=False`: not decoded, `{}`).

        A kept-alive connection the server closed meanwhile fails the call before it got an
        answer; it is sent once more on a new connection (urllib3, under the synchronous
        client, did the same). Every call we make may be repeated: creates are idempotent
        for us (AlreadyExists), patches are merges, deletes carry a uid precondition."""
        async with self._slots:
            return await self._request(method, path, body, content_type, query, answer=answer)

    async def _request(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str,
        query: dict[str, str] | None,
        *,
        answer: bool = True,
    ) -> dict[str, Any]:
        """`request` without the connection slot; `answer` False: only the answer's status counts
        (a health endpoint's `ok`, a patched object no caller reads). Answers are decoded
        by orjson: the standard library's `json` decoding the patched objects the API
        server returns was 5 % of the operator's CPU in a rolling 300-node fleet (issue 15)."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            method, url, headers, payload, post = await self._api.param_serialize(
                method,
                path,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            try:
                response = await self._api.call_api(
                    method, url, headers, payload, post, _request_timeout=self._timeout
                )
            except aiohttp.ServerDisconnectedError:
                response = await self._api.call_api(
                    method, url, headers, payload, post, _request_timeout=self._timeout
                )
            data = await response.read()  # type: ignore[no-untyped-call]
        except client.ApiException as exc:
            raise self._failed(method, translate(exc.status or 0, exc.body)) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            message = f"{method} {path}: {exc or type(exc).__name__}"
            raise self._failed(method, errors.Unavailable(message)) from None
        if not 200 <= response.status < 300:
            raise self._failed(method, translate(response.status, data))
        return orjson.loads(data) if data and answer else {}

    def _failed(self, method: str, error: errors.KubeError) -> errors.KubeError:
        if isinstance(error, errors.Unavailable):
            self._on_unavailable(method)
        return error

    async def ready(self) -> bool:
        """The API server's own readiness (`GET /readyz`, which checks its etcd too): False
        while it does not answer 200. A failed answer counts as unavailable, as every call
        the API server did not answer does (`apihealth` asks this every few seconds)."""
        try:
            async with self._slots:
                await self._request("GET", "/readyz", None, "application/json", None, answer=False)
        except errors.KubeError:
            return False
        return True

    # --- typed verbs ---------------------------------------------------------------

    async def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", res.path(namespace, name))
        except errors.NotFound:
            return None

    async def create(self, res: Resource, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create `body`; None if it already exists (creation is idempotent for us)."""
        namespace = body["metadata"]["namespace"]
        try:
            return await self.request(
                "POST",
                res.path(namespace),
                body=body,
                query={"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict"},
            )
        except errors.AlreadyExists:
            return None

    async def patch(
        self,
        res: Resource,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        *,
        sub: str | None = None,
        content_type: str = MERGE,
        answer: bool = False,
    ) -> dict[str, Any]:
        """Patch the object; the patched object only when asked (`answer`), else `{}`: the
        operator acts on watch events, never on a patch's answer, and a status patch's
        answer is the whole object."""
        return await self.request(
            "PATCH",
            res.path(namespace, name, sub),
            body=patch,
            content_type=content_type,
            query={"fieldManager": FIELD_MANAGER},
            answer=answer,
        )

    async def delete(
        self,
        res: Resource,
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        grace_seconds: int | None = None,
    ) -> bool:
        """Delete (only the object with `uid` if given); False if it was already gone."""
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        if grace_seconds is not None:
            options["gracePeriodSeconds"] = grace_seconds
        try:
            await self.request("DELETE", res.path(namespace, name), body=options)
        except errors.NotFound:
            return False
        except errors.Conflict:  # the uid precondition failed: a newer object took the name
            return False
        return True

    async def list(
        self, res: Resource, namespace: str, *, labels: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """One LIST; the operator reads most kinds from kopf's watch-fed indexes instead."""
        query = {}
        if labels:
            query["labelSelector"] = ",".join(f"{k}={v}" for k, v in labels.items())
        found = await self.request("GET", res.path(namespace), query=query)
        items: list[dict[str, Any]] = found["items"]
        return items


def _blocking(
    method: Callable[Concatenate[Kube, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[BlockingKube, P], T]:
    """`Kube.method`, called on `BlockingKube`'s loop and waited for."""

    def call(self: BlockingKube, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return asyncio.run_coroutine_threadsafe(
            method(self.kube, *args, **kwargs), self.loop
        ).result()

    call.__doc__ = method.__doc__
    return call


class BlockingKube:
    """`Kube` for synchronous callers (tests, benchmarks, tools): every call runs on a
    private event loop in a daemon thread and blocks until it is answered. One adapter,
    so the tests exercise the operator's own requests and error translation."""

    def __init__(self, kube: Kube, loop: asyncio.AbstractEventLoop, thread: threading.Thread):
        self.kube, self.loop, self._thread = kube, loop, thread

    @classmethod
    def from_environment(
        cls, *, timeout: float = 10.0, kubeconfig: str | None = None
    ) -> BlockingKube:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="kube", daemon=True)
        thread.start()
        made = Kube.from_environment(timeout=timeout, kubeconfig=kubeconfig)
        return cls(asyncio.run_coroutine_threadsafe(made, loop).result(), loop, thread)

    request = _blocking(Kube.request)
    get = _blocking(Kube.get)
    create = _blocking(Kube.create)
    patch = _blocking(Kube.patch)
    delete = _blocking(Kube.delete)
    list = _blocking(Kube.list)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.kube.close(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()
