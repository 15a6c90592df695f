"""The chart's ServiceMonitor and PodMonitor as plain Prometheus scrape configs.

There is no Prometheus Operator here, so this does its translation for the parts the chart
uses: Kubernetes service discovery through the API server in the monitor's
`namespaceSelector` namespaces, then relabelling that keeps only the targets the monitor
selects, with the Operator's target labels (namespace, pod, service; job = the Service's
name, or <namespace>/<PodMonitor name>).

- PodMonitor: the `pod` role; keep pods carrying every `selector.matchLabels` label
  (`__meta_kubernetes_pod_label_<name>` and its `labelpresent` twin) and container ports
  named as the endpoint's `port`.
- ServiceMonitor: the Operator discovers the Services' EndpointSlices. The local cluster
  has none (its pod IPs are loopback addresses, which the API refuses in EndpointSlices:
  docs/local-cluster.md), so the Services the monitor selects are resolved here (the
  caller lists them from the API), and each becomes the `pod` role over what an
  EndpointSlice would hold: the pods its `spec.selector` selects, on its port's
  `targetPort`.
"""

from __future__ import annotations

import re
from typing import Any

_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")
_FINISHED = {  # as the Operator does: finished pods are no targets
    "action": "drop",
    "source_labels": ["__meta_kubernetes_pod_phase"],
    "regex": "(Failed|Succeeded)",
}


def _keep_pods(labels: dict[str, str]) -> list[dict[str, Any]]:
    """Relabel rules keeping the pods that carry every one of `labels`."""
    return [
        {
            "action": "keep",
            "source_labels": [
                f"__meta_kubernetes_pod_label_{_UNSAFE.sub('_', key)}",
                f"__meta_kubernetes_pod_labelpresent_{_UNSAFE.sub('_', key)}",
            ],
            "regex": f"{re.escape(value)};true",
        }
        for key, value in sorted(labels.items())
    ]


def _keep_port(port: str | int) -> dict[str, Any]:
    meta = "name" if isinstance(port, str) else "number"
    return {
        "action": "keep",
        "source_labels": [f"__meta_kubernetes_pod_container_port_{meta}"],
        "regex": re.escape(str(port)),
    }


def _match_labels(monitor: dict[str, Any]) -> dict[str, str]:
    selector = monitor["spec"]["selector"]
    if set(selector) - {"matchLabels"}:
        raise ValueError(f"{monitor['metadata']['name']}: only selector.matchLabels is supported")
    return dict(selector["matchLabels"])


def _namespaces(monitor: dict[str, Any]) -> list[str] | None:
    """The namespaces the monitor looks in; None for every namespace."""
    chosen = monitor["spec"].get("namespaceSelector") or {}
    if chosen.get("any"):
        return None
    return list(chosen.get("matchNames") or [monitor["metadata"]["namespace"]])


def _config(
    job_name: str, namespaces: list[str] | None, endpoint: dict[str, Any], *, kubeconfig: str
) -> dict[str, Any]:
    sd: dict[str, Any] = {"role": "pod", "kubeconfig_file": kubeconfig}
    if namespaces is not None:
        sd["namespaces"] = {"names": namespaces}
    return {
        "job_name": job_name,
        "scrape_interval": endpoint.get("interval", "30s"),
        "metrics_path": endpoint.get("path", "/metrics"),
        "kubernetes_sd_configs": [sd],
    }


_TARGET_LABELS = [
    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
]


def scrape_configs(
    monitors: list[dict[str, Any]],
    services: list[dict[str, Any]],
    *,
    kubeconfig: str,
    interval: str | None = None,
) -> list[dict[str, Any]]:
    """One scrape config per endpoint of each PodMonitor, and per endpoint and selected
    Service (from `services`, the cluster's) of each ServiceMonitor; `interval`
    overrides the monitors' own."""
    out = []
    for monitor in monitors:
        meta, spec = monitor["metadata"], monitor["spec"]
        labels, namespaces = _match_labels(monitor), _namespaces(monitor)
        if monitor["kind"] == "PodMonitor":
            job = f"{meta['namespace']}/{meta['name']}"
            for i, endpoint in enumerate(spec["podMetricsEndpoints"]):
                config = _config(
                    f"podMonitor/{job}/{i}", namespaces, endpoint, kubeconfig=kubeconfig
                )
                config["relabel_configs"] = [
                    *_keep_pods(labels), _FINISHED, _keep_port(endpoint["port"]),
                    *_TARGET_LABELS, {"target_label": "job", "replacement": job},
                ]  # fmt: skip
                out.append(config)
            continue
        selected = [
            s
            for s in services
            if (namespaces is None or s["metadata"]["namespace"] in namespaces)
            and labels.items() <= (s["metadata"].get("labels") or {}).items()
        ]
        for i, endpoint in enumerate(spec["endpoints"]):
            for service in selected:
                name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
                (port,) = [p for p in service["spec"]["ports"] if p.get("name") == endpoint["port"]]
                job_name = f"serviceMonitor/{meta['namespace']}/{meta['name']}/{i}/{name}"
                config = _config(job_name, [namespace], endpoint, kubeconfig=kubeconfig)
                config["relabel_configs"] = [
                    *_keep_pods(service["spec"]["selector"]), _FINISHED,
                    _keep_port(port.get("targetPort", port["port"])), *_TARGET_LABELS,
                    {"target_label": "service", "replacement": name},
                    {"target_label": "job", "replacement": name},
                ]  # fmt: skip
                out.append(config)
    for config in out:
        if interval is not None:
            config["scrape_interval"] = interval
    return out
