"""The PROXY protocol v2 header parser, byte by byte (HAProxy's spec, section 2.2)."""

from __future__ import annotations

import pytest
from marketplace_node import proxyv2
from marketplace_node.proxyv2 import NOT_A_HEADER, SIGNATURE, ProxyHeader, ProxyHeaderError

V4 = proxyv2.build(("203.0.113.7", 51000), ("10.0.0.1", 7070))
V6 = proxyv2.build(("2001:db8::7", 443), ("2001:db8::1", 7070))
HTTP = b"GET / HTTP/1.1\r\n\r\n"


def _header(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return SIGNATURE + bytes([ver_cmd, fam]) + len(body).to_bytes(2, "big") + body


def test_a_tcp4_header_names_the_client_and_its_length() -> None:
    assert len(V4) == 16 + 12
    assert proxyv2.parse(V4 + HTTP) == ProxyHeader(("203.0.113.7", 51000), 28)


def test_a_tcp6_header_names_the_client() -> None:
    assert proxyv2.parse(V6) == ProxyHeader(("2001:db8::7", 443), 16 + 36)


def test_tlvs_after_the_addresses_are_skipped() -> None:
    body = V4[16:] + bytes([0x04, 0x00, 0x01, 0x00])  # PP2_TYPE_NOOP, one byte
    data = _header(0x21, 0x11, body)
    assert proxyv2.parse(data + HTTP) == ProxyHeader(("203.0.113.7", 51000), len(data))


@pytest.mark.parametrize("cut", [0, 1, 5, 11, 12, 15, 16, 20, 27])
def test_a_header_cut_anywhere_asks_for_more(cut: int) -> None:
    assert proxyv2.parse(V4[:cut]) is None


@pytest.mark.parametrize(
    "data",
    [HTTP, b"\r\n\r\nX", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", b"\x16\x03\x01"],  # v1, TLS
)
def test_a_stream_without_the_signature_has_no_header(data: bytes) -> None:
    assert proxyv2.parse(data) is NOT_A_HEADER


@pytest.mark.parametrize(
    ("fam", "body"),
    [
        (0x11, V4[16:]),  # LOCAL over TCP4: the balancer's own health check
        (0x00, b""),  # LOCAL, UNSPEC
    ],
)
def test_local_keeps_the_connections_address(fam: int, body: bytes) -> None:
    data = _header(0x20, fam, body)
    assert proxyv2.parse(data) == ProxyHeader(None, len(data))


@pytest.mark.parametrize(
    ("fam", "body"),
    [
        (0x00, b""),  # PROXY, UNSPEC
        (0x12, V4[16:]),  # PROXY over UDP4
        (0x31, bytes(216)),  # PROXY over UNIX stream
    ],
)
def test_addresses_that_name_no_ip_client_keep_the_connections(fam: int, body: bytes) -> None:
    data = _header(0x21, fam, body)
    assert proxyv2.parse(data) == ProxyHeader(None, len(data))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_header(0x11, 0x11, V4[16:]), "version 1"),
        (_header(0x31, 0x11, V4[16:]), "version 3"),
        (_header(0x22, 0x11, V4[16:]), "command 2"),
        (_header(0x2F, 0x11, V4[16:]), "command 15"),
        (_header(0x21, 0x11, V4[16:26]), "too short"),  # 10 of 12 address bytes
        (_header(0x21, 0x21, V4[16:]), "too short"),  # TCP6 with a TCP4 block
        (SIGNATURE + b"\x21\x11\xff\xff", "too long"),
    ],
)
def test_a_malformed_header_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(ProxyHeaderError, match=message):
        proxyv2.parse(data)


def test_build_refuses_mixed_families() -> None:
    with pytest.raises(ValueError, match="one family"):
        proxyv2.build(("203.0.113.7", 1), ("2001:db8::1", 2))
