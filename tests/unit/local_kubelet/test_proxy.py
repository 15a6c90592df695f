"""The Service rules of POD_NETWORK=netns (proxy.py): which endpoints each ClusterIP port
gets, and the iptables-restore text that sends traffic there."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any, cast

import pytest
from local_kubelet import proxy
from local_kubelet.kube import Kube
from local_kubelet.netns import NetnsError, cni_config
from local_kubelet.proxy import Chains, ServicePort, jumps, rules, service_ports

CHAINS = Chains.named("mf-1a2b3c4d")
RANGE = ipaddress.IPv4Network("10.23.0.0/16")
SERVICES = ipaddress.IPv4Network("10.96.0.0/12")


def _service(name: str, ip: str, *ports: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name},
        "spec": {"clusterIP": ip, "ports": list(ports), **spec},
    }


def _slice(
    service: str, ports: list[dict[str, Any]], *endpoints: tuple[str, bool | None]
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": [
            {"addresses": [ip], "conditions": {} if ready is None else {"ready": ready}}
            for ip, ready in endpoints
        ],
    }


def _text(*ports: ServicePort) -> str:
    return rules(
        CHAINS, bridge="mfp-1a2b3c4d", pod_range=RANGE,
        service_range=SERVICES, api_server="127.0.0.1:6531", ports=ports,
    )  # fmt: skip


def test_ready_endpoints_of_every_slice_back_the_port_of_the_same_name() -> None:
    services = [
        _service("web", "10.96.0.10", {"name": "http", "port": 80}, {"name": "m", "port": 9})
    ]
    slices = [
        _slice("web", [{"name": "http", "port": 8080}, {"name": "m", "port": 9100}],
               ("10.23.0.5", True), ("10.23.0.6", None), ("10.23.0.7", False)),
        _slice("web", [{"name": "http", "port": 8080}], ("10.23.16.2", True)),
        _slice("other", [{"name": "http", "port": 1}], ("10.23.0.9", True)),
    ]  # fmt: skip
    found = {p.port: p.backends for p in service_ports(services, slices)}
    # An absent `ready` counts as ready; a not-ready endpoint gets no traffic.
    assert found == {
        80: ("10.23.0.5:8080", "10.23.0.6:8080", "10.23.16.2:8080"),
        9: ("10.23.0.5:9100", "10.23.0.6:9100"),
    }


def test_headless_external_name_and_sctp_services_get_no_rules() -> None:
    services = [
        _service("headless", "None", {"port": 80}),
        _service("ext", "", {"port": 80}, type="ExternalName"),
        _service("sctp", "10.96.0.11", {"port": 80, "protocol": "SCTP"}),
        _service("dns", "10.96.0.12", {"port": 53, "protocol": "UDP"}),
    ]
    found = service_ports(services, [])
    assert [(p.service, p.protocol, p.backends) for p in found] == [("ns/dns:53", "UDP", ())]


def test_backends_split_traffic_evenly_and_the_last_takes_the_rest() -> None:
    text = _text(ServicePort("ns/web:80", "10.96.0.10", 80, "TCP", ("a:1", "b:1", "c:1")))
    dnat = [line for line in text.splitlines() if "10.96.0.10" in line]
    assert [line.split("--to-destination ")[1] for line in dnat] == ["a:1", "b:1", "c:1"]
    assert "--probability 0.3333333333" in dnat[0]
    assert "--probability 0.5000000000" in dnat[1]
    assert "statistic" not in dnat[2]
    assert all("-d 10.96.0.10/32 -p tcp -m tcp --dport 80" in line for line in dnat)


def test_the_service_range_left_after_dnat_is_refused_not_sent_out_of_the_machine() -> None:
    # A port without ready endpoints gets no DNAT; the refusal covers it (and Services
    # not synced yet), so a client fails at once instead of routing off the machine.
    text = _text(ServicePort("ns/web:80", "10.96.0.10", 80, "UDP", ()))
    assert "10.96.0.10" not in text
    assert (
        f"-A {CHAINS.filter} -d 10.96.0.0/12 -j REJECT --reject-with icmp-port-unreachable"
        in text.splitlines()
    )


def test_the_kubernetes_service_goes_to_the_api_server_on_loopback_and_nothing_else_does() -> None:
    # The `kubernetes` Service has no endpoints here (endpoint reconciler none): its
    # listing must not turn into a REJECT that hides the API server's rule.
    text = _text(ServicePort("default/kubernetes:https", "10.96.0.1", 443, "TCP", ()))
    lines = text.splitlines()
    api = [line for line in lines if "10.96.0.1/32" in line]
    assert len(api) == 1
    assert api[0].startswith(f"-A {CHAINS.services} -d 10.96.0.1/32 -p tcp -m tcp --dport 443")
    assert api[0].endswith("-j DNAT --to-destination 127.0.0.1:6531")
    # Anything else from a pod to the host's loopback is dropped (route_localnet).
    assert (
        f"-A {CHAINS.filter} -d 127.0.0.0/8 "
        "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP" in lines
    )


def test_each_sync_replaces_whole_chains_of_this_cluster_only() -> None:
    lines = _text().splitlines()
    # Declared chains are flushed by iptables-restore --noflush; built-in ones never are.
    assert [line for line in lines if line.startswith(":")] == [
        ":MF-1A2B3C4D-SVC - [0:0]", ":MF-1A2B3C4D-MASQ - [0:0]", ":MF-1A2B3C4D-FILTER - [0:0]",
    ]  # fmt: skip
    assert all(len(name) <= 28 for name in (CHAINS.services, CHAINS.masquerade, CHAINS.filter))
    assert lines.count("COMMIT") == 2
    assert (
        "-A MF-1A2B3C4D-MASQ -s 10.23.0.0/16 -o mfp-1a2b3c4d -m conntrack --ctstate DNAT "
        "-j MASQUERADE" in lines
    )
    # Only packets on the cluster's own bridge enter its chains.
    assert all(
        rule[:2] in (["-i", "mfp-x"], ["-o", "mfp-x"]) for _, _, rule in jumps(CHAINS, "mfp-x")
    )


def test_pods_route_only_the_service_range_through_the_bridge() -> None:
    config = cni_config(
        name="mf", bridge="mfp-1", cluster=RANGE, node=ipaddress.IPv4Network("10.23.0.0/20"),
        data_dir=Path("/ipam"),
        services=ipaddress.IPv4Network("10.96.0.0/12"),
    )  # fmt: skip
    assert config["ipam"]["routes"] == [{"dst": "10.96.0.0/12"}]


async def test_rules_iptables_refused_are_installed_again_without_a_new_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    restores: list[bytes] = []

    async def iptables(*argv: str, stdin: bytes = b"") -> bytes:
        restores.append(stdin)
        if len(restores) == 1:
            raise NetnsError("iptables-restore: xtables lock held")
        return b""

    monkeypatch.setattr(proxy, "run", iptables)
    monkeypatch.setattr(proxy, "RETRY_SECONDS", 0.01)
    service_proxy = proxy.ServiceProxy(
        cast("Kube", None), prefix="mf-1a2b3c4d", bridge="mfp-1a2b3c4d", pod_range=RANGE,
        service_range=SERVICES, api_server="127.0.0.1:6531",
    )  # fmt: skip
    loop = asyncio.create_task(service_proxy._sync_loop())
    service_proxy._changed.set()  # one event, then silence
    try:
        for _ in range(200):
            if len(restores) >= 2:
                break
            await asyncio.sleep(0.01)
    finally:
        loop.cancel()
    assert len(restores) == 2, restores
    assert restores[0] == restores[1]
    assert service_proxy._applied == restores[1].decode()
