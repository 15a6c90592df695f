"""The public listener's TLS: served over real sockets, verified by the fleet's CA and name,
and reloaded in place when the mounted files change."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from marketplace_node import tls
from marketplace_node.policy import watch
from marketplace_operator import certs

NOW = datetime.now(UTC)
FLEET_NAME = "blue.shop.svc"


def _ca() -> certs.KeyPair:
    return certs.new_ca("test CA", now=NOW, valid=timedelta(days=30))


def _leaf(ca: certs.KeyPair, *names: str) -> certs.KeyPair:
    return certs.issue(ca, dns_names=names or (FLEET_NAME,), now=NOW, valid=timedelta(days=1))


@dataclass
class Mounted:
    """A Secret volume as the kubelet lays it out: files swapped by a symlink."""

    root: Path
    generation: int = 0

    def write(self, pair: certs.KeyPair, ca: certs.KeyPair, *, key: bytes | None = None) -> None:
        self.generation += 1
        data = self.root / f"..{self.generation}"
        data.mkdir()
        (data / "tls.crt").write_bytes(pair.cert_pem)
        (data / "tls.key").write_bytes(key if key is not None else pair.key_pem)
        (data / "ca.crt").write_bytes(ca.cert_pem)
        link = self.root / "..data.tmp"
        link.symlink_to(data.name)
        os.replace(link, self.root / "..data")
        for name in ("tls.crt", "tls.key", "ca.crt"):
            if not (self.root / name).is_symlink():
                (self.root / name).symlink_to(f"..data/{name}")

    def files(self, peer_name: str | None = FLEET_NAME) -> tls.CertificateFiles:
        return tls.CertificateFiles(
            cert=self.root / "tls.crt",
            key=self.root / "tls.key",
            ca=self.root / "ca.crt",
            peer_name=peer_name,
        )


@dataclass
class Serving:
    mount: Mounted
    ca: certs.KeyPair
    port: int
    files: tls.CertificateFiles


async def _closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


@pytest.fixture
async def serving(tmp_path: Path) -> AsyncIterator[Serving]:
    """A TLS server on the mounted files that closes each connection after the handshake."""
    mount, ca = Mounted(tmp_path), _ca()
    mount.write(_leaf(ca), ca)
    files = mount.files()
    server = await asyncio.start_server(_closing, "127.0.0.1", 0, ssl=files.server)
    async with server:
        yield Serving(mount, ca, server.sockets[0].getsockname()[1], files)


async def served_serial(port: int, client: ssl.SSLContext, name: str | None = FLEET_NAME) -> int:
    """The serial of the certificate the server presents to a new connection."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=name)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def serial(pair: certs.KeyPair) -> int:
    return x509.load_pem_x509_certificate(pair.cert_pem).serial_number


async def test_a_peer_verifies_the_fleet_name_against_the_fleet_ca(
    serving: Serving, tmp_path: Path
) -> None:
    port, client = serving.port, serving.files.client
    assert await served_serial(port, client) > 0
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        await served_serial(port, client, name="red.shop.svc")
    other = tmp_path / "other-ca.crt"
    other.write_bytes(_ca().cert_pem)
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        await served_serial(port, tls.client_context(other), name=FLEET_NAME)


async def test_a_renewed_certificate_is_served_to_new_connections_without_a_restart(
    serving: Serving,
) -> None:
    mount, ca, port, files = serving.mount, serving.ca, serving.port, serving.files
    assert not await files.poll_once()  # nothing changed yet
    renewed = _leaf(ca)
    mount.write(renewed, ca)
    assert await files.poll_once()
    assert await served_serial(port, files.client) == serial(renewed)
    assert files.reloads == 1


async def test_a_key_that_does_not_match_is_refused_and_the_last_good_pair_kept(
    serving: Serving,
) -> None:
    mount, ca, port, files = serving.mount, serving.ca, serving.port, serving.files
    before = await served_serial(port, files.client)
    mount.write(_leaf(ca), ca, key=_leaf(ca).key_pem)
    assert not await files.poll_once()
    assert not await files.poll_once()  # the same broken files are not tried again
    assert await served_serial(port, files.client) == before
    fixed = _leaf(ca)
    mount.write(fixed, ca)
    assert await files.poll_once()
    assert await served_serial(port, files.client) == serial(fixed)


async def test_files_caught_mid_swap_are_read_on_a_later_look(
    serving: Serving,
) -> None:
    mount, ca, port, files = serving.mount, serving.ca, serving.port, serving.files
    (mount.root / "..data").unlink()  # the link between the old and the new directory
    assert not await files.poll_once()
    renewed = _leaf(ca)
    mount.write(renewed, ca)
    assert await files.poll_once()
    assert await served_serial(port, files.client) == serial(renewed)


async def test_a_new_ca_is_trusted_beside_the_old_one_during_a_rotation(
    serving: Serving, tmp_path: Path
) -> None:
    mount, old_ca, port, files = serving.mount, serving.ca, serving.port, serving.files
    new_ca = _ca()
    mount.write(_leaf(new_ca), new_ca)
    assert await files.poll_once()
    assert await served_serial(port, files.client) > 0  # the new CA verifies the new leaf
    second = tmp_path / "second"
    second.mkdir()
    old_mount = Mounted(second)
    old_mount.write(_leaf(old_ca), old_ca)
    old_files = old_mount.files()
    server = await asyncio.start_server(
        lambda r, w: w.close(), "127.0.0.1", 0, ssl=old_files.server
    )
    async with server:
        old_port = server.sockets[0].getsockname()[1]
        assert await served_serial(old_port, files.client) > 0  # and the old one still does


def test_a_named_context_checks_the_name_for_urllib_which_dials_the_address(
    tmp_path: Path,
) -> None:
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(_ca().cert_pem)
    named = tls.client_context(ca_file, FLEET_NAME)
    assert isinstance(named, tls.NamedContext)
    assert named.server_name == FLEET_NAME
    assert named.verify_mode == ssl.CERT_REQUIRED
    assert named.check_hostname
    assert named.minimum_version == ssl.TLSVersion.TLSv1_2
    assert tls.client_context(None).server_name is None


def test_an_unreadable_pair_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        tls.server_context(tmp_path / "absent.crt", tmp_path / "absent.key")


async def test_one_failing_poller_does_not_stop_the_others() -> None:
    seen: list[str] = []
    twice = asyncio.Event()

    class Broken:
        async def poll_once(self) -> bool:
            seen.append("broken")
            raise RuntimeError("bug in a poller")

    class Fine:
        async def poll_once(self) -> bool:
            seen.append("fine")
            if seen.count("fine") == 2:
                twice.set()
            return False

    task = asyncio.create_task(watch.poll_forever([Broken(), Fine()], period=0.01))
    await asyncio.wait_for(twice.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen[:4] == ["broken", "fine", "broken", "fine"]
