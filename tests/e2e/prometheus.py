"""A real Prometheus (built from its Go module by hack/build-prometheus.sh) as a child
process, and what it is checked against: the chart's monitors and Grafana dashboard."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gitops
import pytest
import urllib3
import yaml
from e2e_helpers import wait_http_ok
from gitops import Fleet

from tests.support.net import free_port

HTTP = urllib3.PoolManager()


class Prometheus:
    def __init__(self, config: dict[str, Any], work: Path) -> None:
        self.work = work
        self.port = free_port()
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        binary = Path(gitops.tool("build-prometheus.sh")) / "prometheus"
        self.log = work / "prometheus.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(binary), f"--config.file={work / 'prometheus.yml'}",
                    f"--storage.tsdb.path={work / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
                ],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        ready = f"http://127.0.0.1:{self.port}/-/ready"
        wait_http_ok(self.proc, ready, logs=self.log.read_text, timeout=60, what="prometheus")

    def api(self, path: str, **fields: str) -> Any:
        if self.proc.poll() is not None:
            pytest.fail(f"prometheus exited:\n{self.log.read_text()[-3000:]}")
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        resp = HTTP.request("GET", url, fields=fields, timeout=10.0, retries=False)
        body = json.loads(resp.data)
        assert body["status"] == "success", body
        return body["data"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def rendered_with_monitoring(fleet: Fleet) -> list[dict[str, Any]]:
    """The chart with its monitoring on, as a Prometheus Operator user would install it."""
    text = gitops.render_operator(
        fleet.release,
        fleet.namespace,
        extra=[
            "monitoring.serviceMonitor.enabled=true",
            "monitoring.grafanaDashboard.enabled=true",
        ],
    )
    return [d for d in yaml.safe_load_all(text) if d]


def dashboard_queries(rendered: list[dict[str, Any]]) -> list[str]:
    """Every panel target's PromQL in the dashboard ConfigMap the chart ships."""
    (cm,) = [
        d for d in rendered if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]
    ]
    (text,) = cm["data"].values()

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    return [t["expr"] for p in panels(json.loads(text)["panels"]) for t in p.get("targets", [])]
