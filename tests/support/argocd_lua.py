"""Argo CD's resource health checks, run as Argo CD runs them: Lua 5.1 (Argo CD embeds
gopher-lua, a Lua 5.1), the object as the global `obj`, a `{status, message}` table back.

The scripts come from docs/gitops/argocd-health.yaml, the file users merge into
`argocd-cm`; nothing is copied, so what is tested is what is shipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lupa import lua51

HEALTH_FILE = Path(__file__).resolve().parents[2] / "docs" / "gitops" / "argocd-health.yaml"
KEY_PREFIX = "resource.customizations.health."
STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


@dataclass(frozen=True)
class Health:
    status: str
    message: str


def scripts(path: Path = HEALTH_FILE) -> dict[str, str]:
    """Lua health script per kind, keyed `group_Kind` as in argocd-cm."""
    data = yaml.safe_load(path.read_text())["data"]
    return {k.removeprefix(KEY_PREFIX): v for k, v in data.items() if k.startswith(KEY_PREFIX)}


def _to_lua(runtime: Any, value: Any) -> Any:
    """JSON-shaped Python as gopher-lua sees it: objects and arrays as tables (arrays from
    1), null as nil (an absent key), numbers as Lua numbers."""
    if isinstance(value, Mapping):
        table = runtime.table()
        for k, v in value.items():
            if v is not None:
                table[k] = _to_lua(runtime, v)
        return table
    if isinstance(value, list):
        table = runtime.table()
        for i, v in enumerate(value, start=1):
            table[i] = _to_lua(runtime, v)
        return table
    return value


def health(kind_key: str, obj: Mapping[str, Any]) -> Health:
    """Run the health script of `kind_key` (e.g. `marketplace.p2p.dev_MarketplaceNode`)."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    # the object goes through JSON, as Argo CD's comes from the API server
    runtime.globals().obj = _to_lua(runtime, json.loads(json.dumps(obj)))
    result = runtime.execute(scripts()[kind_key])
    status, message = str(result["status"]), str(result["message"] or "")
    assert status in STATUSES, f"Argo CD knows no health status {status!r}"
    return Health(status, message)


NODE = "marketplace.p2p.dev_MarketplaceNode"
FLEET = "marketplace.p2p.dev_MarketplaceFleet"
