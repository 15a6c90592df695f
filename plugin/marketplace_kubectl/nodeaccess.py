"""`kubectl marketplace search|publish` (and the report's node status): a node's client API
from outside the cluster.

A node whose fleet has TLS on (its pod annotated `scheme: https`) is called over HTTPS,
verified with the fleet's CA (`ca.crt` of the certificate Secret its pod mounts) for the
fleet's name (the pod's `MARKETPLACE_NODE_TLS_PEER_NAME`), through the port-forward as
directly: the certificate names the fleet, not the address dialled.

The way in is `kubectl port-forward` to the node's pod, run with the same kubeconfig,
context and namespace as the plugin, on a free local port. One exception: a pod whose
IP is a loopback address, or on a link of this machine (a bridge: the project's local
cluster under POD_NETWORK=netns, docs/local-cluster.md), is reached directly. There the
local kubelet has no streaming endpoint for port-forward, and the API server refuses to
proxy to loopback addresses.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marketplace_node import sealing, tls
from marketplace_node.model import PackageDraft
from marketplace_operator.render import names
from marketplace_protocol import identity

from marketplace_kubectl.status import condition, fleet_of

DEFAULT_PORT = 7070
FORWARD_TIMEOUT_SECONDS = 20.0
HTTP_TIMEOUT_SECONDS = 60.0
_FORWARDING = re.compile(r"^Forwarding from 127\.0\.0\.1:(\d+) -> \d+")


class NodeAccessError(Exception):
    """No node to talk to, no way to reach it, or the node refused."""


@dataclass(frozen=True)
class PodTls:
    """How to verify a node that serves HTTPS: its certificate Secret and the fleet's name."""

    secret: str
    server_name: str


def pod_tls(pod: Mapping[str, Any] | None) -> PodTls | None:
    """The TLS of a node's pod as the operator made it (pure); None: plain HTTP."""
    if pod is None:
        return None
    notes = (pod.get("metadata") or {}).get("annotations") or {}
    if notes.get(names.TLS_SCHEME_ANNOTATION) != "https":
        return None
    spec = pod.get("spec") or {}
    secret = next(
        (v["secret"]["secretName"] for v in spec.get("volumes") or [] if v.get("name") == "tls"),
        None,
    )
    env = {
        e.get("name"): e.get("value")
        for c in spec.get("containers") or []
        for e in c.get("env") or []
    }
    server_name = env.get("MARKETPLACE_NODE_TLS_PEER_NAME")
    if secret is None or server_name is None:
        raise NodeAccessError(f"pod {pod['metadata'].get('name')} serves https but names no CA")
    return PodTls(secret=str(secret), server_name=str(server_name))


@dataclass(frozen=True)
class Endpoint:
    """Where a MarketplaceNode serves: its pod, pod IP and port, and how to verify it."""

    namespace: str
    pod: str
    ip: str | None
    port: int
    context: ssl.SSLContext | None = None  # set: the node serves https, verified with it

    @property
    def scheme(self) -> str:
        return "https" if self.context is not None else "http"

    @property
    def local(self) -> bool:
        """The pod is reachable from this machine as it is: connect directly."""
        try:
            address = ipaddress.ip_address(self.ip or "")
        except ValueError:
            return False
        return address.is_loopback or on_link(address, _routes())


def _routes() -> str:
    try:
        return Path("/proc/net/route").read_text()
    except OSError:  # not Linux: only loopback pods are known to be reachable
        return ""


def on_link(address: ipaddress.IPv4Address | ipaddress.IPv6Address, routes: str) -> bool:
    """The address is on a link of this machine: a route without a gateway holds it (pure).

    `routes` is /proc/net/route. A pod on a bridge of this machine (the local cluster's
    POD_NETWORK=netns, the real-kubelet Node's, or the plugin run on a Node) is dialled
    directly; pods behind a gateway or the default route go through port-forward.
    """
    if address.version != 4:
        return False
    for line in routes.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest, gateway, mask = (
            ipaddress.IPv4Address(int(f, 16).to_bytes(4, "little"))
            for f in (fields[1], fields[2], fields[7])
        )
        if int(mask) and not int(gateway) and address in ipaddress.IPv4Network(f"{dest}/{mask}"):
            return True
    return False


def pick(mnodes: Sequence[Mapping[str, Any]], *, node: str | None, fleet: str | None) -> str:
    """The MarketplaceNode to use (pure): `node` if given, else a Ready one of `fleet`."""
    if node is not None:
        if not any(m["metadata"]["name"] == node for m in mnodes):
            raise NodeAccessError(f"MarketplaceNode {node} not found")
        return node
    ready = sorted(
        str(m["metadata"]["name"])
        for m in mnodes
        if (fleet is None or fleet_of(m) == fleet)
        and (condition(m, "Ready") or {}).get("status") == "True"
    )
    if not ready:
        where = f"in fleet {fleet}" if fleet else "in the namespace"
        raise NodeAccessError(f"no Ready MarketplaceNode {where}")
    return ready[0]


def endpoint(mnode: Mapping[str, Any], *, context: ssl.SSLContext | None = None) -> Endpoint:
    status = mnode.get("status") or {}
    return Endpoint(
        namespace=str(mnode["metadata"]["namespace"]),
        pod=str(status.get("podName") or mnode["metadata"]["name"]),
        ip=status.get("podIP"),
        port=int(((mnode.get("spec") or {}).get("p2p") or {}).get("port") or DEFAULT_PORT),
        context=context,
    )


def context_for(found: PodTls, ca_secret: Mapping[str, Any] | None) -> ssl.SSLContext:
    """The client context verifying a node with the CA in its certificate Secret."""
    data = (ca_secret or {}).get("data") or {}
    if "ca.crt" not in data:
        raise NodeAccessError(f"Secret {found.secret} holds no ca.crt to verify the node with")
    ca_pem = base64.b64decode(data["ca.crt"]).decode()
    try:
        return tls.client_context(None, found.server_name, ca_pem=ca_pem)
    except ssl.SSLError as exc:
        raise NodeAccessError(f"the ca.crt of Secret {found.secret} is unusable: {exc}") from None


def forwarded_port(line: str) -> int | None:
    """The local port in kubectl port-forward's `Forwarding from 127.0.0.1:N -> P` line."""
    found = _FORWARDING.match(line.strip())
    return int(found.group(1)) if found else None


@contextmanager
def base_url(end: Endpoint, kubectl: Sequence[str]) -> Iterator[str]:
    """`http://host:port` of the node for the duration of the block.

    `kubectl` is the command line of kubectl with the plugin's global flags."""
    if end.local:
        yield f"{end.scheme}://{end.ip}:{end.port}"
        return
    command = [
        *kubectl, "-n", end.namespace, "port-forward", f"pod/{end.pod}", f":{end.port}",
        "--address", "127.0.0.1",
    ]  # fmt: skip
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise NodeAccessError(f"cannot run {command[0]}: {exc.strerror}") from None
    try:
        assert proc.stdout is not None
        port = None
        for line in proc.stdout:  # kubectl prints one line per address, then waits
            port = forwarded_port(line)
            if port is not None:
                break
        if port is None:
            err = proc.stderr.read() if proc.stderr else ""
            raise NodeAccessError(f"kubectl port-forward to {end.pod} failed: {err.strip()}")
        yield f"{end.scheme}://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(FORWARD_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()


def call(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    content_type: str = "",
    context: ssl.SSLContext | None = None,
) -> Any:
    """One call to the node's client API; its JSON answer, or NodeAccessError with its body."""
    request = urllib.request.Request(  # noqa: S310 - http(s) only: built above from a pod address
        url, data=body, method=method, headers={"Content-Type": content_type or "application/json"}
    )
    try:
        with urllib.request.urlopen(  # noqa: S310 - as above
            request, timeout=HTTP_TIMEOUT_SECONDS, context=context
        ) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise NodeAccessError(f"the node answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise NodeAccessError(f"cannot reach the node at {url}: {exc}") from None


def search_query(
    keywords: Sequence[str], *, tags: Sequence[str], category: str | None, limit: int | None
) -> str:
    """The node's search query: `q` and `tag` repeat, as `marketplace-node search` sends them."""
    pairs = [("q", k) for k in keywords] + [("tag", t) for t in tags]
    if category:
        pairs.append(("category", category))
    if limit is not None:
        pairs.append(("limit", str(limit)))
    return urllib.parse.urlencode(pairs)


def publish(
    base: str,
    content: bytes,
    draft: Mapping[str, Any],
    author: identity.Identity,
    *,
    context: ssl.SSLContext | None = None,
) -> Any:
    """Upload the bytes, sign the package with the author's key here, then post it (what
    `marketplace-node publish` does: the node never signs for a client)."""
    digest = hashlib.sha256(content).hexdigest()
    call(
        f"{base}/api/v1/blobs/{digest}",
        method="PUT",
        body=content,
        content_type="application/octet-stream",
        context=context,
    )
    package = PackageDraft.model_validate({**draft, "digest": digest, "size": len(content)})
    meta = sealing.sign_package(author, package, created=int(time.time()))
    return call(
        f"{base}/api/v1/packages",
        method="POST",
        body=meta.model_dump_json(by_alias=True).encode(),
        context=context,
    )


def result_rows(page: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for r in page.get("results") or []:
        pkg = r.get("package") or {}
        rows.append(
            [
                str(pkg.get("name", "")),
                str(pkg.get("version", "")),
                str(pkg.get("category", "")),
                str(r.get("downloads", 0)),
                str(r.get("providers", 0)),
                str(r.get("id", "")),
            ]
        )
    return rows


RESULT_HEADERS = ("name", "version", "category", "downloads", "providers", "id")
