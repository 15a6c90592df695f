"""THE Kubernetes API adapter: one synchronous ApiClient, plain dicts in and out.

Every call blocks: call them from kopf's sync handlers or via `asyncio.to_thread`, never
on the event loop. `kubernetes.client.ApiException` and urllib3 errors never leave this
module; they become `errors.KubeError` subclasses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config

from marketplace_operator import errors
from marketplace_operator.model.common import GROUP, VERSION

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
FIELD_MANAGER = "marketplace-operator"


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


def _translate(status: int, body: bytes | str | None) -> errors.KubeError:
    text = body.decode(errors="replace") if isinstance(body, bytes) else (body or "")
    try:
        message = str(json.loads(text).get("message", text))
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


def call(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    content_type: str = "application/json",
    accept: str = "application/json",
    query: dict[str, str] | list[tuple[str, str]] | None = None,
    timeout: float,
) -> bytes:
    """One REST call on `api`; the raw body of a 2xx answer, else the translated error.

    Shared with the kubectl plugin's adapter (`marketplace_kubectl.api`)."""
    headers = {"Accept": accept, "Content-Type": content_type}
    pairs = list(query.items()) if isinstance(query, dict) else list(query or [])
    try:
        method, url, headers, payload, post = api.param_serialize(
            method,
            path,
            query_params=pairs,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = api.call_api(method, url, headers, payload, post, _request_timeout=timeout)
        data: bytes = response.read()  # type: ignore[no-untyped-call]
    except client.ApiException as exc:
        raise _translate(exc.status or 0, exc.body) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise errors.Unavailable(f"{method} {path}: {exc}") from None
    if not 200 <= response.status < 300:
        raise _translate(response.status, data)
    return data


class Kube:
    """The operator's only door to the API server."""

    def __init__(self, api: client.ApiClient, *, timeout: float = 10.0) -> None:
        self._api = api
        self._timeout = timeout

    @classmethod
    def from_environment(
        cls, *, timeout: float = 10.0, kubeconfig: str | None = None, connections: int = 32
    ) -> Kube:
        """`kubeconfig` if given, else in-cluster config if present, else KUBECONFIG.

        `connections` sizes the HTTP pool to the threads that call concurrently."""
        configuration = client.Configuration()
        configuration.connection_pool_maxsize = connections
        if kubeconfig is not None:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
            return cls(client.ApiClient(configuration), timeout=timeout)
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return cls(client.ApiClient(configuration), timeout=timeout)

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One REST call; the decoded JSON answer."""
        data = call(
            self._api, method, path, body=body, content_type=content_type, query=query,
            timeout=self._timeout,
        )  # fmt: skip
        return json.loads(data) if data else {}

    # --- typed verbs ---------------------------------------------------------------

    def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", res.path(namespace, name))
        except errors.NotFound:
            return None

    def create(self, res: Resource, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create `body`; None if it already exists (creation is idempotent for us)."""
        namespace = body["metadata"]["namespace"]
        try:
            return self.request(
                "POST",
                res.path(namespace),
                body=body,
                query={"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict"},
            )
        except errors.AlreadyExists:
            return None

    def patch(
        self,
        res: Resource,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        *,
        sub: str | None = None,
        content_type: str = MERGE,
    ) -> dict[str, Any]:
        return self.request(
            "PATCH",
            res.path(namespace, name, sub),
            body=patch,
            content_type=content_type,
            query={"fieldManager": FIELD_MANAGER},
        )

    def delete(
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
            self.request("DELETE", res.path(namespace, name), body=options)
        except errors.NotFound:
            return False
        except errors.Conflict:  # the uid precondition failed: a newer object took the name
            return False
        return True

    def list(
        self, res: Resource, namespace: str, *, labels: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """For tests and tools; the operator itself reads from kopf's watch-fed indexes."""
        query = {}
        if labels:
            query["labelSelector"] = ",".join(f"{k}={v}" for k, v in labels.items())
        items: list[dict[str, Any]] = self.request("GET", res.path(namespace), query=query)["items"]
        return items
