"""What certificate a TLS server shows a new connection (tests of certificate reloads)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from cryptography import x509


def served_serial(host: str, port: int, context: ssl.SSLContext, name: str) -> int:
    """The serial of the certificate a new connection to `host:port` is shown, verified
    with `context` for `name`."""

    async def look() -> int:
        _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=name)
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            return x509.load_der_x509_certificate(der).serial_number
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 5)

    return asyncio.run(look())


def serial(cert_pem: bytes) -> int:
    return x509.load_pem_x509_certificate(cert_pem).serial_number
