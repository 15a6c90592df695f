"""Test ports come from below the kernel's ephemeral range, where no connection takes them."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support import net


def _ephemeral() -> range:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return range(low, high + 1)


def test_free_ports_are_distinct_bindable_and_never_ephemeral() -> None:
    ports = net.free_ports(20)
    assert len(set(ports)) == 20
    assert all(port in net.PORTS and port not in _ephemeral() for port in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_run_of_ports_is_consecutive_free_and_never_ephemeral() -> None:
    first = net.free_run(3)
    assert all(p in net.PORTS and p not in _ephemeral() for p in range(first, first + 3))
    with socket.socket() as a, socket.socket() as b, socket.socket() as c:
        for offset, sock in enumerate((a, b, c)):
            sock.bind(("127.0.0.1", first + offset))
