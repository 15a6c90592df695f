"""`kubectl marketplace report`: a support bundle (tar.gz) of a namespace's fleets.

What goes in: the marketplace custom resources, the children the operator owns (pods,
Services, PVCs, ConfigMaps, Secrets *without values*, PodDisruptionBudgets), Events,
the Kubernetes Nodes, the logs of the node pods and the operator pods, and each node's
own `/api/v1/status`. What never goes in: Secret values, tokens, keys, PEM blocks and
credentials in URLs. Everything is scrubbed with the node's redaction code
(`marketplace_protocol.redact`), the same that guards its logs, so one set of rules decides
what a secret looks like. A part that cannot be read is listed in `errors.txt`; the rest
of the bundle is still written (a support bundle is most needed when things are broken).
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import yaml
from marketplace_operator import errors
from marketplace_operator.render import names
from marketplace_protocol.redact import REDACTED, is_secret_name, redact_text, redact_value

from marketplace_kubectl import api as kube
from marketplace_kubectl import nodeaccess

MANAGED = {"app.kubernetes.io/managed-by": names.MANAGED_BY}
OPERATOR_SELECTOR = {"app.kubernetes.io/name": "marketplace-operator"}  # the chart's pods


def _scrub_value(value: Any) -> Any:
    """Credentials in every string scrubbed; a `{name, value}` pair (env var) whose name
    says secret has its value masked. Field names alone mask nothing here: in API objects
    `key`, `secret` or `automountServiceAccountToken` name references, not secrets."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [_scrub_value(v) for v in value]
    if isinstance(value, Mapping):
        out = {str(k): _scrub_value(v) for k, v in value.items()}
        if isinstance(out.get("name"), str) and "value" in out and is_secret_name(out["name"]):
            out["value"] = REDACTED
        return out
    return value


def scrub(obj: Mapping[str, Any]) -> Any:
    """An API object fit for a bundle: no managedFields, no Secret values, strings scrubbed."""
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    out["metadata"] = meta
    if out.get("kind") == "Secret":
        for key in ("data", "stringData"):
            if key in out:
                out[key] = dict.fromkeys(out[key] or {}, REDACTED)
    return _scrub_value(out)


def as_list(items: list[dict[str, Any]], kind: str) -> str:
    """A `kind: List` in YAML, items scrubbed, as `kubectl get -o yaml` prints it."""
    scrubbed = [scrub({"kind": kind, **i}) for i in items]
    return str(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": scrubbed}))


@dataclass
class Bundle:
    """Files of the bundle under one top directory; `tarball()` packs them."""

    root: str
    files: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add_text(self, path: str, text: str) -> None:
        """Store `text`, which its producer has already redacted."""
        self.files[f"{self.root}/{path}"] = text.encode()

    def collect(self, path: str, read: Callable[[], str]) -> None:
        """`read()` (redacted text) into `path`; a failure goes to errors.txt, not fatal."""
        try:
            self.add_text(path, read())
        except (errors.OperatorError, nodeaccess.NodeAccessError) as exc:
            self.problems.append(f"{path}: {exc}")

    def tarball(self) -> bytes:
        files = dict(self.files)
        if self.problems:
            files[f"{self.root}/errors.txt"] = ("\n".join(self.problems) + "\n").encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(files):
                info = tarfile.TarInfo(path)
                info.size = len(files[path])
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(files[path]))
        return buffer.getvalue()


_NAMESPACED = (
    ("marketplacenodes", "MarketplaceNode", kube.MNODES, None),
    ("marketplacefleets", "MarketplaceFleet", kube.FLEETS, None),
    ("banlists", "BanList", kube.BANLISTS, None),
    ("ratelimitpolicies", "RateLimitPolicy", kube.RATELIMITPOLICIES, None),
    ("pods", "Pod", kube.PODS, MANAGED),
    ("services", "Service", kube.SERVICES, MANAGED),
    ("persistentvolumeclaims", "PersistentVolumeClaim", kube.PVCS, MANAGED),
    ("configmaps", "ConfigMap", kube.CONFIGMAPS, MANAGED),
    ("secrets", "Secret", kube.SECRETS, MANAGED),
    ("poddisruptionbudgets", "PodDisruptionBudget", kube.PDBS, MANAGED),
    ("events", "Event", kube.EVENTS, None),
)


def collect(
    cli: kube.Api,
    target: kube.Target,
    *,
    root: str,
    operator_namespace: str,
    log_lines: int,
    header: str,
) -> Bundle:
    """Read everything the bundle holds from the cluster (the only I/O here)."""
    ns = cli.namespace
    bundle = Bundle(root)
    bundle.add_text("README.txt", header)
    bundle.collect("cluster/version.json", lambda: _json(cli.server_version()))
    bundle.collect("cluster/nodes.yaml", lambda: as_list(cli.list(kube.NODES), "Node"))
    for file, kind, res, labels in _NAMESPACED:
        bundle.collect(f"{ns}/{file}.yaml", partial(_listing, cli, res, kind, labels))
    try:
        mnodes = cli.list(kube.MNODES)
    except errors.OperatorError:
        mnodes = []
    for m in mnodes:
        end = nodeaccess.endpoint(m)
        bundle.collect(f"{ns}/logs/{end.pod}.log", partial(_log, cli, ns, end.pod, log_lines))
        bundle.collect(
            f"{ns}/node-status/{m['metadata']['name']}.json",
            partial(_node_status, end, target.kubectl()),
        )
    try:
        operators = cli.list(kube.PODS, operator_namespace, labels=OPERATOR_SELECTOR)
    except errors.OperatorError as exc:
        bundle.problems.append(f"operator pods in {operator_namespace}: {exc}")
        operators = []
    bundle.add_text(f"operator/{operator_namespace}/pods.yaml", as_list(operators, "Pod"))
    for p in operators:
        name = p["metadata"]["name"]
        bundle.collect(
            f"operator/{operator_namespace}/logs/{name}.log",
            partial(_log, cli, operator_namespace, name, log_lines),
        )
    return bundle


def _listing(cli: kube.Api, res: kube.Resource, kind: str, labels: dict[str, str] | None) -> str:
    return as_list(cli.list(res, labels=labels), kind)


def _node_status(end: nodeaccess.Endpoint, kubectl: list[str]) -> str:
    """The node's own public status (peer id, peers, policy)."""
    with nodeaccess.base_url(end, kubectl) as base:
        return _json(nodeaccess.call(f"{base}/api/v1/status"))


def _json(data: Any) -> str:
    return json.dumps(redact_value(data), indent=2)


def _log(cli: kube.Api, namespace: str, pod: str, lines: int) -> str:
    return redact_text(cli.logs(namespace, pod, tail=lines))
