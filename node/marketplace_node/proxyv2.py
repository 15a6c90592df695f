"""The PROXY protocol v2 header (HAProxy's spec, section 2.2): who a balancer's connection is for.

A balancer that relays TCP (an AWS NLB with proxy protocol on, HAProxy `send-proxy-v2`)
puts one binary header before the first byte of the client's stream: a 12-byte
signature, version and command, address family and transport, the length of what
follows, then the addresses (and optional TLVs, skipped). We need only the source
address of a `PROXY` command over TCP (IPv4 or IPv6); `LOCAL` (the balancer's own
health check), `UNSPEC` and UNIX/UDP addresses keep the connection's own address.

Pure and sans-IO: `parse` takes the bytes read so far and says "need more", "not a
header", a header, or raises `ProxyHeaderError`. The listener side is `proxy_gate`.

Our own code, not the `proxy-protocol` package (PyPI, MIT): it is marked alpha, has one
maintainer and no release since 2024; what we use of it would be the 40 lines below,
tested here byte by byte, and it would add a dependency to both images' locks.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Final

SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
PREFIX_LEN: Final = 16
MAX_BODY: Final = 1_024
"""Longest address block (with TLVs) we wait for; a real header's is 12, 36 or 216 bytes
plus a few TLVs. More is refused rather than buffered."""


class ProxyHeaderError(ValueError):
    """Bytes that start like a v2 header but are not a valid one."""


class Command(enum.IntEnum):
    LOCAL = 0
    PROXY = 1


_INET, _INET6 = 0x1, 0x2
_STREAM = 0x1


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header: the client's (address, port), None to keep the connection's own;
    `length` is how many bytes of the stream it took."""

    source: tuple[str, int] | None
    length: int


NOT_A_HEADER: Final = ProxyHeader(None, 0)
"""The stream does not start with the signature: it carries no header."""


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of `data`; None when more bytes are needed to tell;
    `NOT_A_HEADER` when the stream does not start with the v2 signature."""
    head = data[: len(SIGNATURE)]
    if not SIGNATURE.startswith(head):
        return NOT_A_HEADER
    if len(data) < PREFIX_LEN:
        return None
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != 2:
        raise ProxyHeaderError(f"PROXY protocol version {version}, not 2")
    if command not in (Command.LOCAL, Command.PROXY):
        raise ProxyHeaderError(f"PROXY protocol command {command} is unknown")
    family, transport = data[13] >> 4, data[13] & 0x0F
    length = int.from_bytes(data[14:16], "big")
    if length > MAX_BODY:
        raise ProxyHeaderError(f"PROXY protocol address block of {length} bytes is too long")
    if len(data) < PREFIX_LEN + length:
        return None
    body = data[PREFIX_LEN : PREFIX_LEN + length]
    total = PREFIX_LEN + length
    if command == Command.LOCAL or transport != _STREAM:
        return ProxyHeader(None, total)
    if family == _INET:
        return ProxyHeader(_source(body, 4), total)
    if family == _INET6:
        return ProxyHeader(_source(body, 16), total)
    return ProxyHeader(None, total)  # UNSPEC or UNIX: nothing to say about an IP client


def _source(body: bytes, size: int) -> tuple[str, int]:
    """Source address and port of an address block of `size`-byte addresses."""
    if len(body) < 2 * size + 4:
        raise ProxyHeaderError("PROXY protocol address block too short for its family")
    address = ipaddress.ip_address(body[:size])
    port = int.from_bytes(body[2 * size : 2 * size + 2], "big")
    return str(address), port


def build(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A `PROXY` TCP header from `source` to `destination` (as a balancer sends it; for
    tests and tools)."""
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    if src.version != dst.version:
        raise ValueError("source and destination must be of one family")
    family = _INET if src.version == 4 else _INET6
    body = (
        src.packed + dst.packed + source[1].to_bytes(2, "big") + destination[1].to_bytes(2, "big")
    )
    return (
        SIGNATURE
        + bytes([0x20 | Command.PROXY, family << 4 | _STREAM])
        + len(body).to_bytes(2, "big")
        + body
    )
