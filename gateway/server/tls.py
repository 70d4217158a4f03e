"""TLS on the gRPC listener: certificates reloaded from disk, and who the client is.

:class:`CertificateFiles` turns ``GATEWAY_TLS_CERT``, ``GATEWAY_TLS_KEY`` and (mTLS)
``GATEWAY_TLS_CLIENT_CA`` into grpc's dynamic server credentials. grpc asks its fetcher
before every TLS handshake, from grpc's own threads; at most every ``interval`` seconds
the fetcher compares each file's modification time, size and inode with the last ones
seen, and only when one changed reads the files. New bytes that check out (the chain
matches the key, the CA bundle holds certificates, and a second read finds the same
bytes, so a rotation caught half-way is not taken) become the certificate of every new
connection; connections already open keep theirs. Files that do not check out leave the
certificate served unchanged and are logged once, until they change again. Kubernetes
swaps every file of a mounted secret at once (behind a symlink), so it never shows them
broken; a tool writing one file after the other may, for a moment.

:func:`client_identity` names the caller by the client certificate the listener
verified (mTLS).
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import threading
from collections.abc import Callable
from typing import Any, Final, cast

import grpc

from gateway.clock import Clock, MonotonicClock
from gateway.config.parsers import ConfigError, check_ca_bundle, check_key_pair, read_pem

log = logging.getLogger("gateway.server.tls")

Stamp = tuple[int, int, int, int]
"""What :func:`os.stat` says of a file that rotation changes: mtime (ns), size, inode, device."""

IDENTITY_PREFIX: Final = "x509:"


class CertificateFiles:
    """The listener's certificate chain, key and client CAs as files, watched for rotation.

    ``interval`` bounds how often the files are looked at (0: before every handshake), in
    seconds of ``clock``'s :meth:`~gateway.clock.Clock.monotonic`. Construction reads and
    checks the files: ConfigError when they cannot serve.
    """

    def __init__(
        self,
        cert: str,
        key: str,
        client_ca: str | None = None,
        *,
        interval: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self.paths = (cert, key) if client_ca is None else (cert, key, client_ca)
        self.interval = interval
        self._clock = clock or MonotonicClock()
        self._lock = threading.Lock()
        self._next_check = self._clock.monotonic() + interval
        self._reported: str | None = None
        try:
            self._stamps = self._stat()
            self._contents = self._read()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"TLS files: {exc}") from None

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials serving the files' certificate, then each rotation of it."""
        # grpc takes None from the fetcher as "unchanged"; the stub's type leaves it out.
        fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], self.fetch)
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(self._contents),
            fetch,
            require_client_authentication=self.client_ca is not None,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """grpc's fetcher: a new configuration when the files changed, else None."""
        now = self._clock.monotonic()
        if now < self._next_check or not self._lock.acquire(blocking=False):
            return None
        try:
            self._next_check = now + self.interval
            return self._reload()
        finally:
            self._lock.release()

    def _reload(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            stamps = self._stat()
            if stamps == self._stamps:
                return None
            contents = self._read()
        except (OSError, ValueError) as exc:
            self._report(str(exc))
            return None
        self._stamps, self._reported = stamps, None
        if contents == self._contents:
            return None
        self._contents = contents
        log.info("TLS certificate reloaded", extra={"tls_files": list(self.paths)})
        return self._configuration(contents)

    def _report(self, problem: str) -> None:
        if problem != self._reported:
            self._reported = problem
            log.warning(
                "TLS files not reloaded, the certificate served is unchanged: %s",
                problem,
                extra={"tls_files": list(self.paths)},
            )

    def _stat(self) -> tuple[Stamp, ...]:
        stamps = []
        for path in self.paths:
            try:
                found = os.stat(path)
            except OSError as exc:
                raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
            stamps.append((found.st_mtime_ns, found.st_size, found.st_ino, found.st_dev))
        return tuple(stamps)

    def _read(self) -> tuple[bytes, ...]:
        """The files' bytes, checked; ValueError when they cannot serve as they are."""
        contents = tuple(read_pem(path) for path in self.paths)
        check_key_pair(self.cert, self.key)
        if self.client_ca is not None:
            check_ca_bundle(contents[2], self.client_ca)
        if tuple(read_pem(path) for path in self.paths) != contents:
            raise ValueError("the files changed while being read (a rotation under way)")
        return contents

    def _configuration(self, contents: tuple[bytes, ...]) -> grpc.ServerCertificateConfiguration:
        chain, key = contents[0], contents[1]
        client_ca = contents[2] if len(contents) > 2 else None
        return grpc.ssl_server_certificate_configuration([(key, chain)], client_ca)


def client_identity(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """``x509:`` and the SHA-256 (hex) of the DER client certificate the listener
    verified, or None when the call came without one (no mTLS).

    The digest is the certificate's usual fingerprint (``openssl x509 -fingerprint
    -sha256``) and names one certificate: the same one gives the same identity on every
    connection, a renewed one (new serial, new key) a new identity — as a rotated API key
    gives a new credential digest. Only a listener with ``GATEWAY_TLS_CLIENT_CA`` asks for
    client certificates, and it refuses those it cannot verify.
    """
    auth = context.auth_context()
    if list(auth.get("transport_security_type") or ()) != [b"ssl"]:
        return None
    pems = list(auth.get("x509_pem_cert") or ())
    if not pems:
        return None
    der = ssl.PEM_cert_to_DER_cert(pems[0].decode("ascii"))
    return IDENTITY_PREFIX + hashlib.sha256(der).hexdigest()
