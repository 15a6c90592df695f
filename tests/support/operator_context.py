"""An operator `Context` with no cluster, nodes or metrics behind it, for unit tests of what
only keeps state in it (wake-ups, per-node state, recent answers)."""

from __future__ import annotations

from typing import Any, cast

from marketplace_operator.context import Context
from marketplace_operator.settings import Settings


def bare_context(**parts: Any) -> Context:
    """A Context with the default settings, whose API, node client, metrics and tokens are
    None unless given."""
    none = cast("Any", None)
    base: dict[str, Any] = {
        "settings": Settings(), "kube": none, "nodes": none, "metrics": none, "tokens": none,
    }  # fmt: skip
    return Context(**(base | parts))
