"""`kubectl marketplace rollout`: the patches that ask for a restart or a pause, and how far
a fleet's rollout got.

Pure. A restart is a fresh `restartedAt` annotation on each MarketplaceNode of the fleet
(as `kubectl rollout restart` stamps a Deployment's template); pause and resume toggle the
fleet's pause annotation. A rollout is done when the fleet says Complete *and* every
node runs a pod answering its node's current restart request and is Ready for its
generation, so a status read right after a restart never mistakes the old state for done.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from marketplace_operator.model.fleet import PAUSED_ANNOTATION, RESTARTED_AT_ANNOTATION
from marketplace_operator.render.pod import restart_token

from marketplace_kubectl.status import condition, is_paused

Obj = Mapping[str, Any]


def restart_patch(stamp: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: stamp}}}


def pause_patch(paused: bool) -> dict[str, Any]:
    """Merge patch of the fleet's pause annotation (`None` deletes it on resume)."""
    return {"metadata": {"annotations": {PAUSED_ANNOTATION: "true" if paused else None}}}


class State(enum.StrEnum):
    COMPLETE = "Complete"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    DEGRADED = "Degraded"


@dataclass(frozen=True)
class Progress:
    state: State
    message: str

    @property
    def finished(self) -> bool:
        """Nothing more will happen without the user (done, failed or paused)."""
        return self.state is not State.PROGRESSING


def _annotation(obj: Obj | None, key: str) -> str:
    return str((((obj or {}).get("metadata") or {}).get("annotations") or {}).get(key) or "")


def node_settled(mnode: Obj, pod: Obj | None) -> bool:
    """The node's pod answers its restart request, and the node is Ready for its generation."""
    if pod is None or pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    if _annotation(pod, RESTARTED_AT_ANNOTATION) != restart_token(mnode):
        return False
    ready = condition(mnode, "Ready")
    observed = (mnode.get("status") or {}).get("observedGeneration")
    return bool(
        ready and ready.get("status") == "True" and observed == mnode["metadata"].get("generation")
    )


def progress(fleet: Obj | None, mnodes: Sequence[Obj], pods: Mapping[str, Obj]) -> Progress:
    """How far the fleet's rollout got, in the words of `kubectl rollout status`."""
    if fleet is None:
        return Progress(State.PROGRESSING, "waiting for the operator to create the fleet's record")
    status = fleet.get("status") or {}
    name = fleet["metadata"]["name"]
    degraded = condition(fleet, "Degraded")
    if degraded and degraded.get("status") == "True":
        return Progress(
            State.DEGRADED,
            f"fleet {name!r} rollout stopped: {degraded.get('message') or degraded.get('reason')}",
        )
    total = len(mnodes)
    settled = sum(node_settled(m, pods.get(m["metadata"]["name"])) for m in mnodes)
    if status.get("phase") == "Complete" and settled == total and not status.get("pending"):
        return Progress(State.COMPLETE, f"fleet {name!r} successfully rolled out ({total} nodes)")
    if is_paused(fleet):  # the annotation, not the phase: right after a resume the phase lags
        return Progress(
            State.PAUSED,
            f"fleet {name!r} rollout is paused with {settled} of {total} nodes updated "
            f"(resume: kubectl marketplace rollout resume {name})",
        )
    current = status.get("current")
    detail = f", replacing {current}" if current else ""
    blocked = status.get("blockedBy")
    if blocked:
        detail += f", waiting for: {blocked}"
    return Progress(
        State.PROGRESSING,
        f"Waiting for fleet {name!r} rollout to finish: {settled} of {total} nodes updated{detail}",
    )
