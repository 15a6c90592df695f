"""TLS of the public listener: the server's context, followed as its mounted files change,
and the context peers and clients verify with (the fleet's CA).

The certificate files are a mounted Secret (`tls.crt`, `tls.key`, `ca.crt`, as
cert-manager and the operator write it) that the kubelet swaps when the Secret changes.
`CertificateFiles.poll_once` runs in the node's one loop over mounted files
(`policy.watch.poll_forever`) and loads a changed pair into the *live* context:
`SSLContext.load_cert_chain` affects every handshake after it, so a renewed
certificate is served without a restart and without dropping open connections.

A pair is checked on a scratch context before it touches the live one: the kubelet
swaps the files atomically, but a hand-edited Secret can hold a key that does not
match its certificate, and a half-applied load would leave the live context serving
one with the other. Such a pair is logged and the last good one kept.

Peers verify each other against the fleet's CA (`tls_ca_file`) and, with
`tls_peer_name`, check the name every member's certificate carries (the fleet's)
rather than the address they dialled (a pod IP, which no certificate names
in advance). A changed CA file is added to the client's trust, never swapped out of
it: during a CA rotation both the old and the new CA verify, which is what keeps a
fleet half on each connected.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from pathlib import Path
from typing import Any, Final

from marketplace_node.policy.watch import signature

logger = logging.getLogger(__name__)
MINIMUM_VERSION: Final = ssl.TLSVersion.TLSv1_2


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context serving `cert` with `key` (TLS 1.2 or later); `ssl.SSLError` or
    `OSError` if they are unreadable or do not match."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = MINIMUM_VERSION
    ctx.load_cert_chain(cert, key)
    return ctx


class NamedContext(ssl.SSLContext):
    """A client context that checks every server's certificate for `server_name` instead
    of the host it connects to (as `kubectl --tls-server-name` and curl's `--connect-to`):
    urllib, which knows no such option, dials the address and verifies the name."""

    server_name: str | None = None

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        if self.server_name is not None:
            kwargs["server_hostname"] = self.server_name
        return super().wrap_socket(sock, *args, **kwargs)


def client_context(
    ca_file: Path | None, server_name: str | None = None, *, ca_pem: str | None = None
) -> NamedContext:
    """A verifying client context: the CA bundle in `ca_file` or `ca_pem` (else the
    system's), and `server_name` as the name every server's certificate must carry (else
    its host)."""
    ctx = NamedContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = MINIMUM_VERSION
    ctx.server_name = server_name
    if ca_file is None and ca_pem is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        ctx.load_verify_locations(cafile=ca_file, cadata=ca_pem)
    return ctx


class CertificateFiles:
    """The public listener's certificate, key and CA bundle, followed as they change.

    `server` serves HTTPS; `client` verifies peers. Both are live: a changed pair is
    loaded into `server`, a changed CA bundle added to `client`.
    """

    def __init__(
        self,
        *,
        cert: Path,
        key: Path,
        ca: Path | None,
        peer_name: str | None = None,
    ) -> None:
        self._cert, self._key, self._ca = cert, key, ca
        self.peer_name = peer_name
        self._seen = self._signatures()
        self.server = server_context(cert, key)
        self.client = client_context(ca, peer_name)
        self.reloads = 0

    def _signatures(self) -> tuple[object, ...]:
        paths = (self._cert, self._key) + ((self._ca,) if self._ca is not None else ())
        return tuple(signature(path) for path in paths)

    async def poll_once(self) -> bool:
        """Load what changed since the last look; True when the live contexts changed."""
        seen = self._signatures()
        if seen == self._seen or None in seen:
            return False  # unchanged, or caught mid-swap: look again next time
        try:
            await asyncio.to_thread(self._load)
        except (OSError, ssl.SSLError) as exc:
            self._seen = seen  # the same broken files are not tried every second
            logger.warning("TLS files changed but cannot be used (kept the last good): %s", exc)
            return False
        self._seen = seen
        self.reloads += 1
        logger.info("TLS certificate reloaded from %s", self._cert)
        return True

    def _load(self) -> None:
        server_context(self._cert, self._key)  # a scratch load: refuses a mismatched pair
        self.server.load_cert_chain(self._cert, self._key)
        if self._ca is not None:
            self.client.load_verify_locations(cafile=self._ca)
