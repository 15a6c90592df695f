"""ClusterIP Services for pods in their own network namespace (POD_NETWORK=netns).

A small kube-proxy: iptables DNAT from each Service's ClusterIP and port to the ready
endpoints its EndpointSlices list, picked at random as kube-proxy's iptables mode does,
plus the `kubernetes` Service (the first address of the Service range, port 443) to the
API server on the host's loopback. That last one needs `route_localnet` on the bridge
(hack/cluster.sh sets it), and, as kube-proxy does for the same reason, a rule that drops
anything else a pod sends to 127/8, so pods do not reach the host's loopback servers.

Why not the real kube-proxy: its chains have fixed names (KUBE-SERVICES, KUBE-POSTROUTING;
nftables: the table `kube-proxy`) and catch every packet of the machine, so two clusters
on one machine (several checkouts, CI beside a developer) would rewrite each other's rules
and share one Service range. Ours hangs its chains, named after the cluster, off
PREROUTING, POSTROUTING, INPUT and FORWARD for packets on the cluster's own bridge only.
Service traffic is masqueraded to the bridge address, so a reply from a pod on the same
bridge comes back through the host to be un-NATed (kube-proxy leans on br_netfilter for
that; this does not need it). ClusterIPs are reached from pods, not from the host.

One process per cluster runs it (the first Node's kubelet): every local Node's pods are on
the one bridge of the one machine. The rules outlive the kubelet; `hack/cluster.sh down`
removes them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from local_kubelet.informer import Handler, inform
from local_kubelet.kube import JSON, Kube
from local_kubelet.netns import NetnsError, run

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PROTOCOLS = ("TCP", "UDP")  # SCTP would need the sctp match module; nothing uses it here
DEBOUNCE_SECONDS = 0.05
RETRY_SECONDS = 1.0  # after a failed iptables-restore (xtables lock held past -w, say)
API_PORT = 443  # the `kubernetes` Service's port, as on any cluster


@dataclass(frozen=True)
class Chains:
    """The names of one cluster's chains (iptables allows 28 characters)."""

    services: str  # nat, from PREROUTING -i bridge: DNAT
    masquerade: str  # nat, from POSTROUTING -o bridge
    filter: str  # filter, from INPUT and FORWARD -i bridge: drops and rejects

    @classmethod
    def named(cls, prefix: str) -> Chains:
        base = prefix.upper()
        return cls(services=f"{base}-SVC", masquerade=f"{base}-MASQ", filter=f"{base}-FILTER")


@dataclass(frozen=True)
class ServicePort:
    """One port of one ClusterIP Service and where its traffic goes."""

    service: str  # namespace/name:port, for comments and logs
    cluster_ip: str
    port: int
    protocol: str
    backends: tuple[str, ...]  # "ip:port", sorted


def _ready(endpoint: Mapping[str, object]) -> bool:
    conditions = endpoint.get("conditions") or {}
    assert isinstance(conditions, Mapping)
    # API semantics: an absent `ready` means ready.
    return conditions.get("ready") is not False


def service_ports(services: Iterable[JSON], slices: Iterable[JSON]) -> list[ServicePort]:
    """Every ClusterIP Service port with its ready endpoints (pure).

    Slice ports match Service ports by name, as kube-proxy matches them; a slice port's
    number is the resolved targetPort. Headless Services and ExternalName ones have no
    ClusterIP and get nothing.
    """
    by_service: dict[tuple[str, str], list[JSON]] = {}
    for piece in slices:
        meta = piece.get("metadata", {})
        owner = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if owner and piece.get("addressType", "IPv4") == "IPv4":
            by_service.setdefault((meta.get("namespace", ""), owner), []).append(piece)
    found: list[ServicePort] = []
    for svc in services:
        meta, spec = svc.get("metadata", {}), svc.get("spec", {})
        cluster_ip = spec.get("clusterIP")
        if not cluster_ip or cluster_ip == "None" or spec.get("type") == "ExternalName":
            continue
        key = (meta.get("namespace", ""), meta.get("name", ""))
        for port in spec.get("ports") or []:
            protocol = port.get("protocol", "TCP")
            if protocol not in PROTOCOLS:
                continue
            name = port.get("name", "")
            backends = sorted({
                f"{address}:{slice_port['port']}"
                for piece in by_service.get(key, [])
                for slice_port in piece.get("ports") or []
                if slice_port.get("name", "") == name
                and slice_port.get("protocol", "TCP") == protocol
                and slice_port.get("port")
                for endpoint in piece.get("endpoints") or []
                if _ready(endpoint)
                for address in endpoint.get("addresses", [])[:1]
            })  # fmt: skip
            found.append(ServicePort(
                service=f"{key[0]}/{key[1]}:{name or port['port']}",
                cluster_ip=cluster_ip, port=int(port["port"]), protocol=protocol,
                backends=tuple(backends),
            ))  # fmt: skip
    return sorted(found, key=lambda p: (p.cluster_ip, p.protocol, p.port))


def _match(port: ServicePort) -> str:
    proto = port.protocol.lower()
    return f"-d {port.cluster_ip}/32 -p {proto} -m {proto} --dport {port.port}"


def rules(
    chains: Chains,
    *,
    bridge: str,
    pod_range: ipaddress.IPv4Network,
    service_range: ipaddress.IPv4Network,
    api_server: str,
    ports: Iterable[ServicePort],
) -> str:
    """The iptables-restore input (with --noflush) for the cluster's chains (pure).

    Declaring a chain flushes it, so each sync replaces the whole set at once. The
    `kubernetes` Service (the range's first address, port 443) goes to `api_server`, the
    "127.0.0.1:port" the API server listens on. What is left addressed to the Service
    range after DNAT (a port without ready endpoints, a Service not synced yet) is
    refused at once instead of leaving the machine by its default route.
    """
    api_ip = str(service_range.network_address + 1)
    nat = [
        "*nat",
        f":{chains.services} - [0:0]",
        f":{chains.masquerade} - [0:0]",
        f"-A {chains.services} -d {api_ip}/32 -p tcp -m tcp --dport {API_PORT} "
        f'-m comment --comment "default/kubernetes:https" -j DNAT --to-destination {api_server}',
    ]
    for port in ports:
        if (port.cluster_ip, port.port, port.protocol) == (api_ip, API_PORT, "TCP"):
            continue  # the API server, above (its Service has no endpoints here)
        for i, backend in enumerate(port.backends):
            left = len(port.backends) - i
            pick = f"-m statistic --mode random --probability {1 / left:0.10f} " if left > 1 else ""
            nat.append(
                f'-A {chains.services} {_match(port)} -m comment --comment "{port.service}" '
                f"{pick}-j DNAT --to-destination {backend}"
            )
    nat += [
        f"-A {chains.masquerade} -s {pod_range} -o {bridge} -m conntrack --ctstate DNAT "
        "-j MASQUERADE",
        "COMMIT",
    ]
    filter_ = [
        "*filter",
        f":{chains.filter} - [0:0]",
        f"-A {chains.filter} -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT "
        "-j DROP",
        f"-A {chains.filter} -d {service_range} -j REJECT --reject-with icmp-port-unreachable",
        "COMMIT",
    ]
    return "\n".join([*nat, *filter_, ""])


def jumps(chains: Chains, bridge: str) -> list[tuple[str, str, list[str]]]:
    """(table, built-in chain, rule) of each jump into the cluster's chains (pure)."""
    return [
        ("nat", "PREROUTING", ["-i", bridge, "-j", chains.services]),
        ("nat", "POSTROUTING", ["-o", bridge, "-j", chains.masquerade]),
        ("filter", "INPUT", ["-i", bridge, "-j", chains.filter]),
        ("filter", "FORWARD", ["-i", bridge, "-j", chains.filter]),
    ]


class ServiceProxy:
    """Keeps the cluster's chains equal to what its Services and EndpointSlices say."""

    def __init__(
        self,
        kube: Kube,
        *,
        prefix: str,
        bridge: str,
        pod_range: ipaddress.IPv4Network,
        service_range: ipaddress.IPv4Network,
        api_server: str,
    ) -> None:
        self._kube = kube
        self._chains = Chains.named(prefix)
        self._bridge = bridge
        self._pod_range = pod_range
        self._service_range = service_range
        self._api_server = api_server
        self._services: dict[str, JSON] = {}
        self._slices: dict[str, JSON] = {}
        self._changed = asyncio.Event()
        self._applied = ""

    def _text(self) -> str:
        return rules(
            self._chains,
            bridge=self._bridge,
            pod_range=self._pod_range,
            service_range=self._service_range,
            api_server=self._api_server,
            ports=service_ports(self._services.values(), self._slices.values()),
        )

    async def _apply(self) -> bool:
        """Install the rules the cluster's objects call for; False if iptables refused."""
        text = self._text()
        if text == self._applied:
            return True
        try:
            await run("iptables-restore", "-w", "5", "--noflush", stdin=text.encode())
        except NetnsError as exc:
            log.warning("service rules: %s; retrying in %.0fs", exc, RETRY_SECONDS)
            return False
        self._applied = text
        return True

    async def _install(self) -> None:
        """The chains (with the API server's rule) and the jumps into them, once."""
        await self._apply()
        for table, chain, rule in jumps(self._chains, self._bridge):
            try:
                await run("iptables", "-w", "5", "-t", table, "-C", chain, *rule)
            except NetnsError:
                await run("iptables", "-w", "5", "-t", table, "-A", chain, *rule)

    def _on(self, store: dict[str, JSON]) -> Handler:
        async def handle(kind: str, obj: JSON) -> None:
            uid = obj["metadata"]["uid"]
            if kind == "DELETED":
                store.pop(uid, None)
            else:
                store[uid] = obj
            self._changed.set()

        return handle

    async def _sync_loop(self) -> None:
        while True:
            await self._changed.wait()
            await asyncio.sleep(DEBOUNCE_SECONDS)  # one sync for a burst of events
            self._changed.clear()
            if not await self._apply():
                # Nothing else may change for hours: without a retry, the rules would
                # stay stale until the next Service or EndpointSlice event.
                await asyncio.sleep(RETRY_SECONDS)
                self._changed.set()

    async def run(self) -> None:
        await self._install()
        log.info("service proxy: chains %s on %s", self._chains.services, self._bridge)
        await asyncio.gather(
            inform(self._kube, "/api/v1/services", self._on(self._services)),
            inform(
                self._kube,
                "/apis/discovery.k8s.io/v1/endpointslices",
                self._on(self._slices),
            ),
            self._sync_loop(),
        )
