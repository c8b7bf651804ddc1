"""TLS as operators run it: `m2mauth serve` and `serve-http` in real processes, with
certificates from a test CA; curl and grpcio as the clients; SIGHUP reloads; the
plaintext refusal; /metrics on its own port."""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.certs import Issued, TestCA
from tests.e2e.test_http_serving import curl, start_edge
from tests.e2e.test_serve import Served, clean_env, new_client, start, stop
from tests.e2e.test_startup_errors import M2MAUTH as M2MAUTH_EXE
from tests.e2e.test_startup_errors import ROOT_KEY, fails
from tests.waiting import wait_for

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")

PORTS_0 = ["--grpc-port", "0", "--http-port", "0", "--metrics-port", "0"]


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "ca")


def tls_args(pair: Issued) -> list[str]:
    return ["--tls-cert", str(pair.cert_path), "--tls-key", str(pair.key_path)]


def grpc_credentials(ca: TestCA, client: Issued | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        ca.cert_path.read_bytes(),
        client.key_pem() if client else None,
        client.cert_pem() if client else None,
    )


def client_context(ca: TestCA, alpn: str = "http/1.1") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.cert_path))
    context.set_alpn_protocols([alpn])
    return context


def serial_served(port: int, ca: TestCA, alpn: str = "http/1.1") -> int:
    """The serial number of the certificate a new TLS connection to ``port`` sees."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        client_context(ca, alpn).wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def stderr_until(served: Served, needle: str, count: int, timeout: float = 10.0) -> str:
    """What the server wrote to stderr up to the ``count``-th line holding ``needle``
    (or until ``timeout``); ``stop`` reads the rest, so the two join into the whole."""
    assert served.process.stderr is not None
    fd = served.process.stderr.fileno()
    got = b""
    deadline = time.monotonic() + timeout
    while got.decode(errors="replace").count(needle) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        got += chunk
    return got.decode(errors="replace")


def http_port(served: Served) -> int:
    return int(served.http_url.rsplit(":", 1)[1])


def token_with_curl(url: str, ca: TestCA, client_id: str, secret: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    return curl(
        "--cacert",
        str(ca.cert_path),
        "-u",
        f"{client_id}:{secret}",
        "-d",
        "grant_type=client_credentials",
        f"{url}/oauth2/token",
    )


def test_the_token_endpoint_over_https_and_metrics_on_their_own_port(
    tmp_path: Path, ca: TestCA
) -> None:
    served = start(["--dev", *PORTS_0, *tls_args(ca.issue("server"))], tmp_path)
    try:
        assert served.http_url.startswith("https://127.0.0.1:"), served.stdout
        client = new_client(served, ("invoices:read",), grpc_credentials(ca))
        status, body = token_with_curl(served.http_url, ca, client.client_id, client.secret)
        assert status == 200, body
        assert body["token_type"] == "Bearer"
        # With TLS on, the default issuer is https.
        status, metadata = curl("--cacert", str(ca.cert_path), f"{served.http_url}/"
                                ".well-known/oauth-authorization-server")  # fmt: skip
        assert metadata["issuer"] == served.http_url
        # curl without the CA refuses the server; plaintext HTTP gets no answer.
        untrusted = subprocess.run(
            ["curl", "-sS", f"{served.http_url}/healthz"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert untrusted.returncode == 60  # CURLE_PEER_FAILED_VERIFICATION
        plain = subprocess.run(
            ["curl", "-sS", served.http_url.replace("https", "http") + "/healthz"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert plain.returncode != 0
        # /metrics is not on the OAuth port, and is on the metrics port, without org ids.
        status, error = curl("--cacert", str(ca.cert_path), f"{served.http_url}/metrics")
        assert status == 404, error
        [metrics_url] = served.metrics_urls
        metrics = httpx.get(metrics_url).text
        assert "m2mauth_tokens_issued_total 1.0" in metrics
        assert client.org_id not in metrics
    finally:
        code, stderr = stop(served)
    assert code == 0, stderr


def test_the_edge_calls_a_mutual_tls_core(tmp_path: Path, ca: TestCA) -> None:
    clients = TestCA(tmp_path / "clients", "internal clients CA")
    core = start(
        ["--dev", *PORTS_0, *tls_args(ca.issue("core")), "--tls-client-ca", str(clients.cert_path)],
        tmp_path,
    )
    edge_cert = clients.issue("edge", ("edge",), client=True)
    try:
        assert ", mutual TLS" in core.stdout[0]
        operator = clients.issue("ops", ("ops",), client=True)
        client = new_client(core, (), grpc_credentials(ca, operator))
        # The operator's CLI, with its certificate, and without (refused, in one line).
        cli = [M2MAUTH_EXE, "orgs", "get", client.org_id, "--field", "id"]
        cli += ["--server", f"127.0.0.1:{core.port}", "--ca-file", str(ca.cert_path)]
        env = clean_env(M2MAUTH_ADMIN_KEY=core.admin_key or "")
        with_cert = [*cli, "--tls-client-cert", str(operator.cert_path)]
        with_cert += ["--tls-client-key", str(operator.key_path)]

        def run(args: list[str]) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                args, capture_output=True, text=True, env=env, timeout=60, check=False
            )

        done = run(with_cert)
        assert (done.returncode, done.stdout.strip()) == (0, client.org_id), done.stderr
        refused = run(cli)
        assert refused.returncode != 0
        assert "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        half = run(with_cert[:-2])
        assert half.returncode == 2, half.stderr
        assert "--tls-client-cert and --tls-client-key go together" in half.stderr
        upstream = f"127.0.0.1:{core.port}"
        edge, edge_url = start_edge(
            upstream,
            tmp_path,
            "--upstream-ca", str(ca.cert_path),
            "--upstream-cert", str(edge_cert.cert_path),
            "--upstream-key", str(edge_cert.key_path),
            *tls_args(ca.issue("edge-server")),
        )  # fmt: skip
        try:
            assert edge_url.startswith("https://")
            status, body = token_with_curl(edge_url, ca, client.client_id, client.secret)
            assert status == 200, body
        finally:
            edge.send_signal(signal.SIGTERM)
            assert edge.wait(timeout=30) == 0
        # Without its client certificate, the core refuses the edge: 503, not a token.
        edge, edge_url = start_edge(upstream, tmp_path, "--upstream-ca", str(ca.cert_path))
        try:
            status, body = curl(
                "-u", f"{client.client_id}:{client.secret}", "-d",
                "grant_type=client_credentials", f"{edge_url}/oauth2/token",
            )  # fmt: skip
            assert (status, body["error"]) == (503, "temporarily_unavailable")
        finally:
            edge.send_signal(signal.SIGTERM)
            assert edge.wait(timeout=30) == 0
    finally:
        code, stderr = stop(core)
    assert code == 0, stderr


def test_sighup_reloads_certificates_without_dropping_connections(
    tmp_path: Path, ca: TestCA
) -> None:
    first = ca.issue("server", serial=0xA1)
    served = start(["--dev", *PORTS_0, *tls_args(first)], tmp_path)
    port = http_port(served)
    early = ""
    try:
        assert serial_served(port, ca) == 0xA1
        assert serial_served(served.port, ca, "h2") == 0xA1
        # A keep-alive HTTP connection and a gRPC channel, open across the reload.
        kept = http.client.HTTPSConnection("127.0.0.1", port, context=client_context(ca))
        kept.request("GET", "/healthz")
        assert kept.getresponse().read() == b"ok\n"
        kept_socket = kept.sock
        channel = grpc.secure_channel(f"127.0.0.1:{served.port}", grpc_credentials(ca))
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1

        ca.issue("next", serial=0xB2).write(first.cert_path, first.key_path)
        served.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: serial_served(port, ca) == 0xB2), "HTTP did not reload"
        assert wait_for(lambda: serial_served(served.port, ca, "h2") == 0xB2), "gRPC neither"
        # What was open still works, on the certificate it was opened with.
        kept.request("GET", "/healthz")
        assert kept.getresponse().read() == b"ok\n"
        assert kept.sock is kept_socket
        der = kept.sock.getpeercert(binary_form=True)
        assert isinstance(der, bytes)
        assert x509.load_der_x509_certificate(der).serial_number == 0xA1
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
        kept.close()
        channel.close()

        # A bad new certificate (not matching the key; then an expired one) is refused
        # and the current one stays in service.
        bad = ca.issue("mismatched", serial=0xC3)
        first.cert_path.write_bytes(bad.cert_pem())
        served.process.send_signal(signal.SIGHUP)
        # Both listeners must have read the mismatched pair before it is overwritten,
        # or the first reload may already see the expired one.
        early = stderr_until(served, "keeping the current certificate", count=2)
        expired = ca.issue(
            "expired",
            serial=0xD4,
            valid_from=datetime.now(UTC) - timedelta(days=2),
            valid_until=datetime.now(UTC) - timedelta(days=1),
        )
        expired.write(first.cert_path, first.key_path)
        served.process.send_signal(signal.SIGHUP)
        assert serial_served(port, ca) == 0xB2
        assert serial_served(served.port, ca, "h2") == 0xB2
    finally:
        code, stderr = stop(served)
    stderr = early + stderr
    assert code == 0, stderr
    refused = [line for line in stderr.splitlines() if "keeping the current certificate" in line]
    # Both bad reloads, on both listeners, each said in one line.
    assert len(refused) == 4, stderr
    assert any("does not match the private key" in line for line in refused)
    assert any("expired at" in line for line in refused)
    assert all(json.loads(line)["level"] == "error" for line in refused)


def test_sighup_reaches_every_worker(tmp_path: Path, ca: TestCA) -> None:
    first = ca.issue("server", serial=0xA1)
    served = start(["--dev", "--processes", "2", *PORTS_0, *tls_args(first)], tmp_path)
    port = http_port(served)
    try:
        assert len(served.metrics_urls) == 2
        ca.issue("next", serial=0xB2).write(first.cert_path, first.key_path)
        served.process.send_signal(signal.SIGHUP)
        # The kernel spreads new connections over both workers: 20 in a row on the new
        # certificate means both reloaded (one stale worker would show in ~half).
        assert wait_for(lambda: all(serial_served(port, ca) == 0xB2 for _ in range(20)))
        assert all(serial_served(served.port, ca, "h2") == 0xB2 for _ in range(20))
    finally:
        code, stderr = stop(served)
    assert code == 0, stderr


def test_an_expired_certificate_is_refused_at_start(tmp_path: Path, ca: TestCA) -> None:
    expired = ca.issue(
        "expired",
        valid_from=datetime.now(UTC) - timedelta(days=2),
        valid_until=datetime.now(UTC) - timedelta(days=1),
    )
    line = fails(["serve", "--dev", *PORTS_0, *tls_args(expired)], tmp_path, 2)
    assert line.startswith("error: cannot start: TLS: certificate ")
    assert "expired at" in line


def test_plaintext_on_a_public_address_is_refused_unless_allowed(tmp_path: Path) -> None:
    production = ["serve", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"]
    production += ["--root-key", ROOT_KEY, *PORTS_0, "--http-host", "0.0.0.0"]
    production += ["--issuer", "https://auth.example.com"]
    line = fails(production, tmp_path, 2)
    assert "--http-host 0.0.0.0 is reachable from other machines but OAuth HTTP has no TLS" in line
    assert "--tls-cert" in line
    assert "--allow-plaintext if a load balancer or sidecar terminates TLS" in line
    # Allowed: the start goes on, to the next check (this database is not migrated).
    line = fails([*production, "--allow-plaintext"], tmp_path, 2)
    assert line == "error: cannot start: database is not migrated: run `m2mauth migrate`"
    # The edge: its listener, and a hop to another machine in clear.
    line = fails(["serve-http", "--upstream", "10.1.2.3:7443", *PORTS_0[2:]], tmp_path, 2)
    assert "--upstream 10.1.2.3:7443 is another machine and the hop has no TLS" in line


def test_plaintext_on_a_public_address_is_only_a_warning_under_dev(tmp_path: Path) -> None:
    served = start(["--dev", *PORTS_0, "--http-host", "0.0.0.0"], tmp_path)
    try:
        warnings = [line for line in served.stdout if line.startswith("warning: no TLS")]
        assert len(warnings) == 1, served.stdout
        assert "--http-host 0.0.0.0" in warnings[0]
    finally:
        code, stderr = stop(served)
    assert code == 0, stderr


def test_serve_help_shows_the_tls_flags() -> None:
    done = subprocess.run(
        [M2MAUTH_EXE, "serve", "--help"],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    for flag in ("--tls-cert", "--tls-client-ca", "--allow-plaintext", "--metrics-port"):
        assert flag in done.stdout
    assert "--upstream-ca" not in done.stdout  # the edge's alone
