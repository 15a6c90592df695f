"""The plugin's one door to the API server: kubeconfig and context as kubectl reads them.

A short-lived command line tool makes a handful of calls and exits, so it uses the
synchronous `kubernetes` client (the operator's adapter serves a long-running process).
`kubernetes.config` reads the same kubeconfig files kubectl does (`--kubeconfig`, else
every file in `$KUBECONFIG`, else `~/.kube/config`), with their contexts and exec
credential plugins. Library errors never leave this module: they become the operator's
`errors.KubeError` subclasses, which `cli` turns into one line and an exit code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config
from marketplace_operator import errors
from marketplace_operator.k8s import (
    CONFIGMAPS,
    ENDPOINTSLICES,
    FLEETS,
    MNODES,
    PDBS,
    PODS,
    PVCS,
    SECRETS,
    SERVICES,
    Resource,
    translate,
)
from marketplace_operator.model.common import GROUP, VERSION

FIELD_MANAGER = "kubectl-marketplace"
MERGE = "application/merge-patch+json"
JSON = "application/json"
TIMEOUT_SECONDS = 30.0
Query = dict[str, str] | list[tuple[str, str]]
"""Query parameters; pairs when a key repeats."""

BANLISTS = Resource("banlists", GROUP, VERSION)
RATELIMITPOLICIES = Resource("ratelimitpolicies", GROUP, VERSION)
EVENTS = Resource("events")
NODES = Resource("nodes", namespaced=False)
__all__ = [
    "BANLISTS",
    "CONFIGMAPS",
    "ENDPOINTSLICES",
    "EVENTS",
    "FLEETS",
    "MNODES",
    "NODES",
    "PDBS",
    "PODS",
    "PVCS",
    "RATELIMITPOLICIES",
    "SECRETS",
    "SERVICES",
    "Api",
    "Resource",
    "Target",
]


@dataclass(frozen=True)
class Target:
    """Which cluster and namespace, as kubectl's global flags say."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None

    def kubectl(self) -> list[str]:
        """kubectl (`$KUBECTL` if set) with the same kubeconfig and context."""
        command = [os.environ.get("KUBECTL", "kubectl")]
        if self.kubeconfig:
            command += ["--kubeconfig", self.kubeconfig]
        if self.context:
            command += ["--context", self.context]
        return command


def _context_namespace(target: Target) -> str:
    """`--namespace`, else the context's namespace, else `default` (kubectl's rule)."""
    if target.namespace:
        return target.namespace
    try:
        contexts, active = config.list_kube_config_contexts(config_file=target.kubeconfig)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError):
        return "default"
    chosen = next((c for c in contexts if c["name"] == target.context), None) or active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


class Api:
    """Blocking calls against one cluster; plain dicts in and out."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._api = api
        self.namespace = namespace

    @classmethod
    def connect(cls, target: Target) -> Api:
        configuration = client.Configuration()
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=target.kubeconfig,
                context=target.context,
                client_configuration=configuration,
            )
        except (config.ConfigException, OSError) as exc:
            raise errors.KubeError(f"cannot load kubeconfig: {exc}") from None
        return cls(client.ApiClient(configuration), _context_namespace(target))

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = JSON,
        query: Query | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> bytes:
        """One REST call; the raw answer (any 2xx). The operator's adapter is asynchronous
        (`marketplace_operator.k8s`); this one blocks, and shares its error translation."""
        headers = {"Accept": "*/*", "Content-Type": content_type}
        pairs = list(query.items()) if isinstance(query, dict) else list(query or [])
        try:
            method, url, headers, payload, post = self._api.param_serialize(
                method,
                path,
                query_params=pairs,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(
                method, url, headers, payload, post, _request_timeout=timeout
            )
            data: bytes = response.read()  # type: ignore[no-untyped-call]
        except client.ApiException as exc:
            raise translate(exc.status or 0, exc.body) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise errors.Unavailable(f"{method} {path}: {exc}") from None
        if not 200 <= response.status < 300:
            raise translate(response.status, data)
        return data

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        data = self.call(method, path, **kwargs)
        return json.loads(data) if data else {}

    # --- typed verbs -----------------------------------------------------------------

    def get(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self.json("GET", res.path(namespace or self.namespace, name))
        except errors.NotFound:
            return None

    def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        labels: dict[str, str] | None = None,
        fields: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        query = {}
        if labels:
            query["labelSelector"] = ",".join(f"{k}={v}" for k, v in labels.items())
        if fields:
            query["fieldSelector"] = ",".join(f"{k}={v}" for k, v in fields.items())
        answer = self.json("GET", res.path(namespace or self.namespace), query=query)
        items: list[dict[str, Any]] = answer.get("items") or []
        return items

    def create(self, res: Resource, body: dict[str, Any]) -> dict[str, Any]:
        return self.json(
            "POST",
            res.path(body["metadata"].get("namespace") or self.namespace),
            body=body,
            query={"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict"},
        )

    def patch(self, res: Resource, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch; put `metadata.resourceVersion` in it to fail on a race."""
        return self.json(
            "PATCH",
            res.path(self.namespace, name),
            body=patch,
            content_type=MERGE,
            query={"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict"},
        )

    def logs(self, namespace: str, pod: str, *, tail: int, container: str | None = None) -> str:
        query = {"tailLines": str(tail)}
        if container:
            query["container"] = container
        data = self.call("GET", PODS.path(namespace, pod, "log"), query=query)
        return data.decode(errors="replace")

    def server_version(self) -> dict[str, Any]:
        return self.json("GET", "/version")
