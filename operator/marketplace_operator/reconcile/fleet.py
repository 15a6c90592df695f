"""Fleet-level views and decisions: members to announce, and whether a pod may be replaced."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from marketplace_protocol.admin import Member

from marketplace_operator.reconcile.observe import PodView
from marketplace_operator.render import configmap


@dataclass(frozen=True)
class MemberPod:
    """One fleet member as the pod index sees it."""

    node: str
    pod: PodView
    port: int
    scheme: str = "http"  # https when its public listener serves TLS


def members(pods: Iterable[MemberPod], peer_ids: Mapping[str, str]) -> list[Member]:
    """Members a node should know: every pod of the fleet with an IP that is not going away.

    Readiness is deliberately not required: a fleet starting together must find each
    other before any member can pass its `joined` gate.
    """
    out = []
    for m in pods:
        if m.pod.ip is None or m.pod.deleting or m.pod.phase in {"Failed", "Succeeded"}:
            continue
        host = f"[{m.pod.ip}]" if ":" in m.pod.ip else m.pod.ip
        out.append(
            Member(
                address=f"{m.scheme}://{host}:{m.port}", name=m.node, peer_id=peer_ids.get(m.node)
            )
        )
    return configmap.members_document(out).members


def members_digest(items: Sequence[Member]) -> str:
    return hashlib.sha256(configmap.members_json(items).encode()).hexdigest()[:16]


def leader(names: Iterable[str]) -> str | None:
    """The member that writes fleet-wide objects (members.json): the first by name."""
    return min(names, default=None)


def one_at_a_time(fleet: Sequence[MemberPod], node: str) -> bool:
    """Default replacement gate: replace `node` only while every other member is ready."""
    return all(m.pod.ready and not m.pod.deleting for m in fleet if m.node != node)
