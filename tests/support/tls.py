"""TLS for the tests: throwaway CAs (trustme) written to files, secure channels, the
certificate a server presents, and an HTTPS upstream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import trustme
from aiohttp import web


@dataclass(frozen=True)
class KeyPair:
    """A leaf certificate as files: its chain and its key."""

    cert: Path
    key: Path
    leaf: trustme.LeafCert

    @property
    def der(self) -> bytes:
        """The leaf certificate, DER-encoded (what a TLS peer receives)."""
        return ssl.PEM_cert_to_DER_cert(self.leaf.cert_chain_pems[0].bytes().decode())


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` at once, as a rotation does (new file renamed over)."""
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)


def write_ca(ca: trustme.CA, path: Path) -> Path:
    replace_file(path, ca.cert_pem.bytes())
    return path


def write_leaf(leaf: trustme.LeafCert, directory: Path, name: str) -> KeyPair:
    """``name.crt`` (the chain) and ``name.key`` in ``directory``, replaced if present."""
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key", leaf)
    replace_file(pair.cert, b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    replace_file(pair.key, leaf.private_key_pem.bytes())
    return pair


def secure_channel(
    target: str, ca: trustme.CA, client: trustme.LeafCert | None = None
) -> grpc.aio.Channel:
    """A channel trusting ``ca``, presenting ``client``'s certificate when given. Its
    connections are its own (no subchannel shared with other channels of the process), so
    a new channel means a new TLS handshake."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem.bytes(),
        private_key=client.private_key_pem.bytes() if client else None,
        certificate_chain=(
            b"".join(blob.bytes() for blob in client.cert_chain_pems) if client else None
        ),
    )
    return grpc.aio.secure_channel(
        target, credentials, options=[("grpc.use_local_subchannel_pool", 1)]
    )


async def presented_certificate(target: str, ca: trustme.CA) -> bytes:
    """The DER certificate a TLS server at ``target`` (host:port) presents on a new
    connection, verified against ``ca``, offering ALPN h2 as gRPC clients do."""
    host, _, port = target.rpartition(":")
    context = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())
    context.set_alpn_protocols(["h2"])
    _, writer = await asyncio.open_connection(host, int(port), ssl=context)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert isinstance(der, bytes)
        return der
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def serving_https_app(app: web.Application, leaf: trustme.LeafCert) -> AsyncIterator[str]:
    """An aiohttp app over HTTPS on 127.0.0.1:0 with ``leaf``'s certificate; yields its
    base URL."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
