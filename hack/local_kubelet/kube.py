"""A small asyncio client for the Kubernetes REST API: the kubelet's only network I/O to it.

Raw JSON in and out (the kubelet parses what it reads into model.py), strategic
merge patches, and watches as async iterators. API errors become KubeError,
so aiohttp's exceptions never leave this module.
"""

from __future__ import annotations

import base64
import json
import random
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

JSON = dict[str, Any]
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def gone(self) -> bool:
        return self.status == 410


def _material(user: Mapping[str, Any], key: str, directory: Path) -> str:
    """A kubeconfig credential as a file path (ssl wants files, kubeconfigs embed data)."""
    if f"{key}-data" in user:
        path = directory / key
        path.write_bytes(base64.b64decode(user[f"{key}-data"]))
        path.chmod(0o600)
        return str(path)
    return str(user[key])


def load_kubeconfig(path: Path) -> tuple[str, ssl.SSLContext]:
    """The server URL and a TLS context with the current context's client certificate."""
    config = yaml.safe_load(path.read_text())
    context_name = config["current-context"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    with tempfile.TemporaryDirectory(prefix="local-kubelet-") as tmp:
        directory = Path(tmp)
        tls = ssl.create_default_context(
            cafile=_material(cluster, "certificate-authority", directory)
        )
        tls.load_cert_chain(
            _material(user, "client-certificate", directory),
            _material(user, "client-key", directory),
        )
    return str(cluster["server"]), tls


class Kube:
    """One authenticated connection pool to the API server."""

    def __init__(self, server: str, tls: ssl.SSLContext) -> None:
        self.server = server.rstrip("/")
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Kube:
        return cls(*load_kubeconfig(path))

    def _new_session(self, limit: int) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._tls, limit=limit),
            headers={"User-Agent": "local-kubelet"},
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        """Pool for short requests."""
        if self._session is None:
            self._session = self._new_session(64)
        return self._session

    @property
    def watch_session(self) -> aiohttp.ClientSession:
        """Pool for watches: each holds its connection for minutes, so it has no cap
        (sharing a capped pool with requests starves them once watches fill it)."""
        if self._watch_session is None:
            self._watch_session = self._new_session(0)
        return self._watch_session

    async def close(self) -> None:
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        time_limit: float = 30,
    ) -> JSON:
        """One call; the decoded JSON answer (or {} for an empty one)."""
        data = None if body is None else json.dumps(body)
        try:
            async with self.session.request(
                method,
                self.server + path,
                data=data,
                params=params,
                headers={"Content-Type": content_type},
                timeout=aiohttp.ClientTimeout(total=time_limit),
            ) as response:
                text = await response.text()
                if response.status >= 400:
                    raise KubeError(response.status, _message(text))
                return json.loads(text) if text else {}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(0, f"{method} {path}: {exc!r}") from exc

    async def get(self, path: str, **params: str) -> JSON | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path, params=params or None)
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    async def watch(
        self,
        path: str,
        *,
        resource_version: str,
        params: Mapping[str, str] | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[tuple[str, JSON]]:
        """(type, object) events of one watch request, until the server ends it (after
        `timeout_seconds`; default `watch_timeout()`)."""
        if timeout_seconds is None:
            timeout_seconds = watch_timeout()
        query = {
            **(params or {}),
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        try:
            async with self.watch_session.get(
                self.server + path,
                params=query,
                timeout=aiohttp.ClientTimeout(total=timeout_seconds + 30, sock_read=None),
            ) as response:
                if response.status >= 400:
                    raise KubeError(response.status, _message(await response.text()))
                async for line in _lines(response.content, MAX_WATCH_EVENT_BYTES):
                    if not line.strip():
                        continue
                    event = orjson.loads(line)  # a tenth of a kubelet's CPU with json's
                    if event["type"] == "ERROR":
                        status = event["object"]
                        raise KubeError(int(status.get("code", 500)), str(status.get("message")))
                    yield event["type"], event["object"]
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(0, f"watch {path}: {exc!r}") from exc


MIN_WATCH_TIMEOUT_SECONDS = 300


def watch_timeout() -> int:
    """How long one watch request asks to last: 5 to 10 minutes at random, as client-go's
    reflector asks (a kubelet watches each Secret and ConfigMap its pods show this way).
    A fixed minute made a kubelet running 1,000 pods renew 2,000 watches a minute, 12,500
    WATCH requests in a 1,000-node rollout: more of the API server's CPU than any other
    request, on the machine the operator's scale is measured on (issue 15). Nothing
    waits for a renewal: an event comes on the open watch as it happens."""
    return random.randint(MIN_WATCH_TIMEOUT_SECONDS, 2 * MIN_WATCH_TIMEOUT_SECONDS)  # noqa: S311


MAX_WATCH_EVENT_BYTES = 8 * 1024 * 1024
"""One watch event's JSON: an object (≤ 1.5 MiB in etcd, binaryData base64'd) and envelope."""


async def _lines(stream: aiohttp.StreamReader, limit: int) -> AsyncIterator[bytes]:
    """Newline-delimited events of any size up to `limit`. Iterating the stream itself
    would raise aiohttp's LineTooLong above 128 KiB (a ConfigMap with a large binaryData),
    which is no ClientError: it would end the informer's task for good."""
    buffer = bytearray()
    async for chunk in stream.iter_any():
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            yield bytes(buffer[: end + 1])
            del buffer[: end + 1]
        if len(buffer) > limit:
            raise KubeError(0, f"watch event larger than {limit} bytes")
    if buffer:
        yield bytes(buffer)


def _message(text: str) -> str:
    try:
        return str(json.loads(text).get("message", text))
    except (ValueError, AttributeError):
        return text[:500]
