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


@dataclass(frozen=True)
class Announcement:
    """A fleet's members, rendered once per change of the fleet for all its members' passes.

    Each member's pass needs the list, its digest, members.json and its own push body
    (every member but itself). Built per pass, that was N pydantic models and an N-entry
    JSON document per pass: O(N) per pass, O(N^2) per poll round of the fleet.
    """

    members: tuple[Member, ...]
    digest: str
    text: str  # members.json, as the fleet's policy ConfigMap carries it
    leader: str | None  # the member that writes members.json
    _fragments: tuple[tuple[str, str], ...]  # (name, the member's JSON) in document order

    def push_body(self, node: str) -> bytes:
        """`PUT /admin/v1/members` for `node`: every other member, as `Members` dumps it."""
        inner = ",".join(text for name, text in self._fragments if name != node)
        return f'{{"members":[{inner}]}}'.encode()


def announcement(pods: Sequence[MemberPod], peer_ids: Mapping[str, str]) -> Announcement:
    listed = tuple(members(pods, peer_ids))
    text = configmap.members_json(listed)
    return Announcement(
        members=listed,
        digest=hashlib.sha256(text.encode()).hexdigest()[:16],
        text=text,
        leader=leader(m.node for m in pods),
        _fragments=tuple((m.name, m.model_dump_json(by_alias=True)) for m in listed),
    )


def leader(names: Iterable[str]) -> str | None:
    """The member that writes fleet-wide objects (members.json): the first by name."""
    return min(names, default=None)


def one_at_a_time(fleet: Sequence[MemberPod], node: str) -> bool:
    """Default replacement gate: replace `node` only while every other member is ready."""
    return all(m.pod.ready and not m.pod.deleting for m in fleet if m.node != node)
