"""Fleet-level views and decisions: members to announce (with the addresses outside peers
reach them at), and whether a pod may be replaced."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from marketplace_protocol.admin import Member

from marketplace_operator.reconcile.observe import PodView


@dataclass(frozen=True)
class MemberPod:
    """One fleet member as the pod index sees it."""

    node: str
    pod: PodView
    port: int
    scheme: str = "http"  # https when its public listener serves TLS


MEMBERS = "members"


def members_key(namespace: str | None, fleet: str) -> tuple[str, str | None, str]:
    """Where the pods index lists a fleet's members (`handlers.mnode.mnode_pods`), beside
    each pod under its own (namespace, name): three parts, so never a pod's key."""
    return (MEMBERS, namespace, fleet)


def fleets_of(keys: Iterable[Any]) -> Iterator[tuple[str | None, str]]:
    """The (namespace, fleet) of every fleet listed among the pods index's `keys`."""
    for key in keys:
        if len(key) == 3 and key[0] == MEMBERS:
            yield key[1], key[2]


@dataclass(frozen=True)
class EntryAddress:
    """Where the fleet's entry Service is reached from outside the cluster: a balancer's
    `host` (the same for every member), or else `node_port` on each member's own Node."""

    port: int
    host: str | None = None  # the balancer's; None: the member's Node (a NodePort)


def entry_address(service: Mapping[str, Any] | None) -> EntryAddress | None:
    """The outside address the entry Service gives, if any: a LoadBalancer's first ingress
    (IP, else hostname) on the Service port; else, for NodePort and LoadBalancer, the node
    port; None for a ClusterIP (reached only inside the cluster) or no Service."""
    if service is None:
        return None
    spec = service.get("spec") or {}
    if spec.get("type") not in ("NodePort", "LoadBalancer"):
        return None
    port = (spec.get("ports") or [{}])[0]
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    balancer = next((i.get("ip") or i.get("hostname") for i in ingress if i), None)
    if spec.get("type") == "LoadBalancer" and balancer and port.get("port"):
        return EntryAddress(port=int(port["port"]), host=str(balancer))
    if port.get("nodePort"):
        return EntryAddress(port=int(port["nodePort"]))
    return None


def _url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _external(m: MemberPod, entry: EntryAddress | None) -> str | None:
    if entry is None:
        return None
    host = entry.host if entry.host is not None else m.pod.host_ip
    return None if host is None else _url(m.scheme, host, entry.port)


def _going(m: MemberPod) -> bool:
    """Its pod is going away (deleted, or ended): not announced."""
    return m.pod.deleting or m.pod.phase in {"Failed", "Succeeded"}


def members(
    pods: Iterable[MemberPod], peer_ids: Mapping[str, str], entry: EntryAddress | None = None
) -> list[Member]:
    """Members a node should know: every pod of the fleet with an IP that is not going away,
    with its outside address when the fleet's entry Service gives one (`entry`).

    Readiness is deliberately not required: a fleet starting together must find each
    other before any member can pass its `joined` gate.
    """
    return list(announcement(tuple(pods), peer_ids, entry).members)


MemberKey = tuple[str, str, int, str, str | None, str | None, EntryAddress | None]
"""What one member's entry depends on: node, pod IP, port, scheme, host IP, peer id, entry."""
Rendered = tuple[Member, str, str]
"""A member, its JSON as pushed (`Members`) and as members.json has it (no nulls)."""


@dataclass(frozen=True)
class Announcement:
    """A fleet's members, rendered once per change of the fleet for all its members' passes.

    Each member's pass needs the list, its digest, members.json and its own push body
    (every member but itself). Built per pass, that was N pydantic models and an N-entry
    JSON document per pass: O(N) per pass, O(N^2) per poll round of the fleet. Built per
    change, it still re-rendered every member: a tenth of the operator's CPU in a 300-node
    rollout (py-spy), so each member's rendering is kept (`rendered`) and a change renders
    only the members it changed.
    """

    members: tuple[Member, ...]
    digest: str
    text: str  # members.json, as the fleet's policy ConfigMap carries it
    leader: str | None  # the member that writes members.json
    _fragments: tuple[tuple[str, str], ...]  # (name, the member's JSON) in document order
    _names: frozenset[str] = frozenset()  # the members listed
    rendered: Mapping[MemberKey, Rendered] = field(default_factory=dict)

    def others(self, node: str) -> int:
        """How many members `node`'s push body lists (all but itself)."""
        return len(self._fragments) - (node in self._names)

    def push_body(self, node: str) -> bytes:
        """`PUT /admin/v1/members` for `node`: every other member, as `Members` dumps it."""
        inner = ",".join(text for name, text in self._fragments if name != node)
        return f'{{"members":[{inner}]}}'.encode()


def _key(m: MemberPod, peer_ids: Mapping[str, str], entry: EntryAddress | None) -> MemberKey:
    assert m.pod.ip is not None
    return (m.node, m.pod.ip, m.port, m.scheme, m.pod.host_ip, peer_ids.get(m.node), entry)


def announcement_inputs(
    pods: Sequence[MemberPod], peer_ids: Mapping[str, str], entry: EntryAddress | None = None
) -> tuple[object, ...]:
    """What `announcement` depends on, and nothing else: a pod's readiness, restarts or
    conditions change it often (each a new object in the index) and leave it as it was."""
    listed = tuple(_key(m, peer_ids, entry) for m in pods if m.pod.ip is not None and not _going(m))
    return listed, leader(m.node for m in pods), entry


def _render(m: MemberPod, peer_ids: Mapping[str, str], entry: EntryAddress | None) -> Rendered:
    assert m.pod.ip is not None
    member = Member(
        address=_url(m.scheme, m.pod.ip, m.port),
        name=m.node,
        peer_id=peer_ids.get(m.node),
        external=_external(m, entry),
    )
    pushed = member.model_dump_json(by_alias=True)
    return member, pushed, member.model_dump_json(by_alias=True, exclude_none=True)


def announcement(
    pods: Sequence[MemberPod],
    peer_ids: Mapping[str, str],
    entry: EntryAddress | None = None,
    previous: Announcement | None = None,
) -> Announcement:
    """The fleet's announcement; members unchanged since `previous` are not rendered again."""
    kept = previous.rendered if previous is not None else {}
    rendered: dict[MemberKey, Rendered] = {}
    for m in pods:
        if m.pod.ip is None or _going(m):
            continue
        key = _key(m, peer_ids, entry)
        rendered[key] = kept.get(key) or _render(m, peer_ids, entry)
    listed = sorted(rendered.values(), key=lambda r: (r[0].name, r[0].address))
    text = '{"members":[' + ",".join(r[2] for r in listed) + "]}"
    return Announcement(
        members=tuple(r[0] for r in listed),
        digest=hashlib.sha256(text.encode()).hexdigest()[:16],
        text=text,
        leader=leader(m.node for m in pods),
        _fragments=tuple((r[0].name, r[1]) for r in listed),
        _names=frozenset(r[0].name for r in listed),
        rendered=rendered,
    )


def leader(names: Iterable[str]) -> str | None:
    """The member that writes fleet-wide objects (members.json): the first by name."""
    return min(names, default=None)


def one_at_a_time(fleet: Sequence[MemberPod], node: str) -> bool:
    """Default replacement gate: replace `node` only while every other member is ready."""
    return all(m.pod.ready and not m.pod.deleting for m in fleet if m.node != node)
