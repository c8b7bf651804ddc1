"""TLS for the listeners and for serve-http's hop to the core: certificate files
read and checked, served, and reloaded on SIGHUP without dropping a connection.

A reload changes what *new* handshakes present; connections already open keep
the certificate they were opened with (TLS does not renegotiate here), so
replacing a certificate never drops traffic. A new certificate that does not
load, does not match its key, or is outside its validity period is refused
with one log line, and the current one stays in service: a bad deploy of the
files must not take the server down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from m2mauth.config import CertificateFiles

log = logging.getLogger("m2mauth.tls")


class TlsError(Exception):
    """A certificate, key or CA file that cannot be used; the message is one line
    naming the file and what is wrong with it."""


@dataclass(frozen=True)
class LoadedPair:
    chain_pem: bytes
    key_pem: bytes
    leaf: x509.Certificate

    def describe(self) -> str:
        return (
            f"serial {self.leaf.serial_number:x}, "
            f"expires {self.leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
        )


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None


def read_certificates(path: str, what: str) -> tuple[bytes, list[x509.Certificate]]:
    """The PEM bytes of a file of certificates (a chain, or CAs), and them parsed."""
    pem = _read(path, what)
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise TlsError(f"{what} {path}: no PEM certificate in it") from None
    return pem, certs


def load_pair(files: CertificateFiles, *, now: datetime | None = None) -> LoadedPair:
    """Read a certificate chain and its key, checked to be usable now."""
    chain_pem, chain = read_certificates(files.cert, "certificate")
    key_pem = _read(files.key, "private key")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TlsError(f"private key {files.key}: it is encrypted; give it unencrypted") from None
    except ValueError:
        raise TlsError(f"private key {files.key}: no PEM private key in it") from None
    leaf = chain[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if leaf.public_key().public_bytes(encoding, public) != key.public_key().public_bytes(
        encoding, public
    ):
        raise TlsError(f"certificate {files.cert} does not match the private key {files.key}")
    moment = now or datetime.now(UTC)
    if moment > leaf.not_valid_after_utc:
        raise TlsError(
            f"certificate {files.cert} expired at {leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
        )
    if moment < leaf.not_valid_before_utc:
        raise TlsError(
            f"certificate {files.cert} is not valid before "
            f"{leaf.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}"
        )
    return LoadedPair(chain_pem, key_pem, leaf)


class GrpcServerTls:
    """The gRPC listener's credentials, with mutual TLS when a client CA is given.

    grpcio asks the fetcher before every new handshake (grpc.dynamic_ssl_server_
    credentials); it answers with the reloaded configuration once, and None
    ("keep what you have") otherwise, so an unchanged certificate costs nothing.
    """

    def __init__(self, files: CertificateFiles, client_ca: str = "") -> None:
        self.files = files
        self.client_ca = client_ca
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self.current = load_pair(files)
        self._initial = self._configuration(self.current)

    def _configuration(self, pair: LoadedPair) -> grpc.ServerCertificateConfiguration:
        roots = read_certificates(self.client_ca, "client CA")[0] if self.client_ca else None
        return grpc.ssl_server_certificate_configuration([(pair.key_pem, pair.chain_pem)], roots)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._initial,
            self._fetch,
            require_client_authentication=bool(self.client_ca),
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def reload(self) -> bool:
        try:
            pair = load_pair(self.files)
            configuration = self._configuration(pair)
        except TlsError as exc:
            log.error("gRPC TLS reload failed, keeping the current certificate: %s", exc)
            return False
        with self._lock:
            self._pending = configuration
            self.current = pair
        log.info("gRPC TLS certificate reloaded (%s)", pair.describe())
        return True


class HttpServerTls:
    """The OAuth HTTP listener's SSLContext, reloaded in place.

    uvicorn serves with this one context; ``load_cert_chain`` on it changes what
    new handshakes present (each connection copies the certificate when it is
    opened). The files are checked on a scratch context first, because a failed
    ``load_cert_chain`` may leave the live context with the new certificate and
    the old key. Call :meth:`reload` on the serving event loop's thread: an
    SSLContext must not change while another thread opens a connection from it.
    """

    def __init__(self, files: CertificateFiles) -> None:
        self.files = files
        self.current = load_pair(files)
        self.context = self._new_context()

    def _new_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])  # what uvicorn speaks
        try:
            context.load_cert_chain(self.files.cert, self.files.key)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"certificate {self.files.cert}: {exc}") from None
        return context

    def reload(self) -> bool:
        try:
            pair = load_pair(self.files)
            self._new_context()
            self.context.load_cert_chain(self.files.cert, self.files.key)
        except TlsError as exc:
            log.error("HTTP TLS reload failed, keeping the current certificate: %s", exc)
            return False
        except (OSError, ssl.SSLError) as exc:  # the files changed again in between
            log.error("HTTP TLS reload failed: %s", exc)
            return False
        self.current = pair
        log.info("HTTP TLS certificate reloaded (%s)", pair.describe())
        return True


def upstream_credentials(ca: str, cert: str, key: str) -> grpc.ChannelCredentials:
    """Credentials of serve-http's channel to the core: the CA to trust (the system
    roots when none), and a client certificate for mutual TLS when given."""
    roots = read_certificates(ca, "--upstream-ca")[0] if ca else None
    if cert:
        pair = load_pair(CertificateFiles(cert, key))
        return grpc.ssl_channel_credentials(roots, pair.key_pem, pair.chain_pem)
    return grpc.ssl_channel_credentials(roots)


def on_sighup(reload: Callable[[], None]) -> Callable[[], None]:
    """Run ``reload`` on every SIGHUP; return the function that stops doing so.

    The handler only writes a byte to a pipe, and a thread of its own does the
    work: a Python signal handler runs on the main thread between two bytecodes,
    possibly inside a lock that the work would take. Must be called on the main
    thread (signal handlers live there); elsewhere, nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def handler(*_: object) -> None:
        # A full pipe already holds a pending reload.
        with contextlib.suppress(BlockingIOError):
            os.write(write_end, b"\0")

    def work() -> None:
        while os.read(read_end, 64):
            try:
                reload()
            except Exception:
                log.exception("TLS reload failed")
        os.close(read_end)

    threading.Thread(target=work, name="sighup-reload", daemon=True).start()
    signal.signal(signal.SIGHUP, handler)

    def uninstall() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        os.close(write_end)

    return uninstall
