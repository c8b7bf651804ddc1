"""Errors: one line on stderr, never a traceback, and the documented exit codes.

0 ok, 1 the server answered with an error, 2 usage error, 3 server unreachable.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import AbstractContextManager
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from m2mauth.bootstrap import App, bootstrap
from m2mauth.core.errors import StoreUnavailable
from m2mauth.core.interfaces import Store, UnitOfWork
from m2mauth.v1 import organization_service_pb2_grpc
from tests.cli.conftest import Cli, one_error_line, run_cli
from tests.delegating_store import DelegatingStore
from tests.grpc import conftest as grpc_fixtures


def test_not_found_is_exit_1_with_the_reason_and_what_to_do(cli: Cli) -> None:
    line = cli.fails(1, "orgs", "get", "org_00000000000000000000000000")
    assert line.startswith("error: organization 'org_00000000000000000000000000' not found")
    assert "(NOT_FOUND)" in line
    assert "check the id" in line


def test_a_bad_field_names_the_field_and_the_reason(cli: Cli) -> None:
    org_id = cli.text("orgs", "create", "--name", "Acme", "-q")
    line = cli.fails(1, "apps", "create", "--org", org_id, "--name", "")
    assert line == "error: application.name: is required (INVALID_FIELD)"
    line = cli.fails(1, "apps", "create", "--org", org_id, "--name", "x", "--scope", "a b")
    assert "(INVALID_FIELD)" in line
    assert "scopes[0]" in line


def test_no_admin_key_is_a_usage_error(cli: Cli) -> None:
    result = run_cli(["orgs", "list", "--server", cli.server])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert (
        one_error_line(result) == "error: no admin key: set M2MAUTH_ADMIN_KEY or pass --admin-key"
    )


def test_a_wrong_admin_key_is_an_error_from_the_server(cli: Cli) -> None:
    line = cli.fails(1, "orgs", "list", M2MAUTH_ADMIN_KEY="m2m_ak_" + "A" * 43)
    assert "(ADMIN_KEY_INVALID)" in line
    assert "M2MAUTH_ADMIN_KEY" in line
    # --admin-key wins over the variable.
    assert cli.ok("orgs", "list", "--admin-key", cli.admin_key, M2MAUTH_ADMIN_KEY="nope")


def test_a_malformed_admin_key_is_called_invalid_not_missing(cli: Cli) -> None:
    line = cli.fails(1, "orgs", "list", M2MAUTH_ADMIN_KEY="nope")
    assert line == (
        "error: the admin key is not valid: admin keys start with m2m_ak_ (ADMIN_KEY_INVALID); "
        "check M2MAUTH_ADMIN_KEY or --admin-key: the server does not know this key "
        "(`m2mauth admin-key create` makes one)"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["orgs", "create"],  # missing --name
        ["orgs", "frobnicate"],
        ["apps", "create", "--name", "x"],  # missing --org
        ["apps", "create", "--org", "org_x", "--name", "x", "--ttl", "soon"],
        ["orgs", "list", "--limit", "0"],
        ["orgs", "list", "--output", "yaml"],
        ["audit", "list", "--since", "last tuesday"],
        ["orgs", "list", "--timeout", "0"],
        ["orgs", "list", "--server", ""],
        ["orgs", "list", "--ca-file", "/nonexistent/ca.pem"],
    ],
)
def test_click_usage_errors_exit_2(cli: Cli, args: list[str]) -> None:
    result = cli.run(*args)
    assert result.exit_code == 2, result.stderr
    assert "Error:" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["orgs", "update", "org_x"], "nothing to update"),
        (["apps", "update", "app_x", "--scope", "a", "--clear-scopes"], "contradict"),
        (["token"], "no client credentials"),
        (["token", "--client-id", "client_x"], "set M2MAUTH_CLIENT_SECRET"),
        (["introspect", "-"], "no token on stdin"),
    ],
)
def test_our_usage_errors_exit_2_in_one_line(cli: Cli, args: list[str], message: str) -> None:
    assert message in cli.fails(2, *args)


def test_an_unknown_field_is_a_usage_error(cli: Cli) -> None:
    org_id = cli.text("orgs", "create", "--name", "Acme", "-q")
    line = cli.fails(2, "orgs", "get", org_id, "--field", "nope")
    assert line.startswith("error: no field 'nope': --field takes one of id, name, external_id")


def test_unreachable_server_is_exit_3(cli: Cli) -> None:
    line = cli.fails(3, "orgs", "list", "--server", "127.0.0.1:1")
    assert line.startswith("error: cannot reach the m2mauth server at 127.0.0.1:1 (")
    assert "M2MAUTH_SERVER" in line
    # Client commands that need no admin key say the same.
    line = cli.fails(
        3, "token", "--server", "127.0.0.1:1", "--client-id", "c", "--client-secret", "s"
    )
    assert "cannot reach" in line


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a hung peer)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_a_deadline_before_connecting_is_exit_3(cli: Cli, silent_port: int) -> None:
    line = cli.fails(3, "orgs", "list", "--server", f"127.0.0.1:{silent_port}", "--timeout", "0.5")
    assert "no answer within 0.5s" in line


def test_a_deadline_after_connecting_is_an_error_from_the_server(cli: Cli) -> None:
    def slow(request: bytes, context: grpc.ServicerContext) -> bytes:
        time.sleep(2)
        return b""

    handler = grpc.method_handlers_generic_handler(
        "m2mauth.v1.OrganizationService",
        {"ListOrganizations": grpc.unary_unary_rpc_method_handler(slow)},
    )
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    try:
        line = cli.fails(1, "orgs", "list", "--server", f"127.0.0.1:{port}", "--timeout", "0.5")
    finally:
        srv.stop(0)
    assert line == (
        "error: ListOrganizations: the server did not answer within 0.5s; retry, or raise --timeout"
    )


def test_a_ca_file_without_a_certificate_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    line = cli.fails(2, "orgs", "list", "--ca-file", str(not_pem))
    assert line == f"error: --ca-file {not_pem}: no PEM certificate in it"


PEM_ARMOUR = "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    ("args", "exit_code"),
    [
        (["--admin-key", "k", "--server", "127.0.0.1:1"], 3),
        (["--admin-key", "k", "--server", "nohost.invalid:1"], 3),
        (["--admin-key", "k", "--server", "127.0.0.1:1", "--tls"], 3),
        (["--admin-key", "k", "--server", "127.0.0.1:1", "--ca-file", "NOT_PEM"], 2),
        # PEM armour around garbage: gRPC core itself fails to load it, and says so.
        (["--admin-key", "k", "--server", "127.0.0.1:1", "--ca-file", "BAD_PEM"], 3),
        (["--server", "127.0.0.1:1"], 2),  # no admin key
    ],
)
def test_a_real_process_fails_in_exactly_one_line(
    args: list[str], exit_code: int, tmp_path: Path
) -> None:
    """In a fresh process gRPC core would log its own errors too; one line is all we allow."""
    files = {"NOT_PEM": "garbage\n", "BAD_PEM": PEM_ARMOUR.format("Z2FyYmFnZQ==")}
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    args = [str(tmp_path / a) if a in files else a for a in args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("M2MAUTH_", "GRPC_"))}
    done = subprocess.run(
        [sys.executable, "-m", "m2mauth.cli", "orgs", "list", "--timeout", "5", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == exit_code, done.stderr
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: ")


class SwitchableStore(DelegatingStore):
    """Delegates to a real store until switched off; then every use is StoreUnavailable."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.down = False

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        if self.down:
            raise StoreUnavailable()
        return self.inner.unit_of_work()

    def reading(self) -> AbstractContextManager[UnitOfWork]:
        if self.down:
            raise StoreUnavailable()
        return self.inner.reading()

    def ping(self) -> None:
        if self.down:
            raise StoreUnavailable()
        self.inner.ping()


def test_store_unavailable_is_an_error_from_the_server_not_unreachable(store: Store) -> None:
    switchable = SwitchableStore(store)
    container = bootstrap(
        grpc_fixtures.make_settings(), store=switchable, root_key=secrets.token_bytes(32)
    )
    key = container.admin_keys.create_local(None)[1]
    srv = grpc_fixtures.start_server(container)
    try:
        env = {"M2MAUTH_SERVER": f"127.0.0.1:{srv.port}", "M2MAUTH_ADMIN_KEY": key}
        assert run_cli(["orgs", "list"], env).exit_code == 0
        switchable.down = True
        result = run_cli(["orgs", "list"], env)
        assert result.exit_code == 1, result.stderr
        line = one_error_line(result)
        assert "(STORE_UNAVAILABLE)" in line
        assert "retry" in line
    finally:
        srv.stop(0)


@pytest.fixture
def bare_server() -> Iterator[int]:
    """A gRPC server that implements nothing (an older or a foreign server)."""
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield port
    srv.stop(0)


def test_unimplemented_is_exit_1_and_names_the_call(cli: Cli, bare_server: int) -> None:
    line = cli.fails(1, "orgs", "list", "--server", f"127.0.0.1:{bare_server}")
    assert "does not implement ListOrganizations (UNIMPLEMENTED)" in line


def test_an_unexpected_exception_is_one_line_not_a_traceback(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("m2mauth.cli_support.output.show_list", broken)
    line = cli.fails(1, "orgs", "list")
    assert line.startswith("error: unexpected RuntimeError: boom;")
    assert "bug" in line


# --- TLS -------------------------------------------------------------------

TLS_NAME = "m2mauth.test"


def self_signed(directory: Path) -> tuple[bytes, bytes, Path]:
    """(key PEM, certificate PEM, certificate file) for TLS_NAME, its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TLS_NAME)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(TLS_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    path = directory / "ca.pem"
    path.write_bytes(cert_pem)
    return key_pem, cert_pem, path


@pytest.fixture
def tls_server(container: App, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The organization service behind TLS, and the CA file that trusts it."""
    key_pem, cert_pem, ca_file = self_signed(tmp_path)
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    organization_service_pb2_grpc.add_OrganizationServiceServicer_to_server(
        container.servicers.organizations, srv
    )
    port = srv.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    srv.start()
    yield port, ca_file
    srv.stop(0)


def test_tls_with_a_ca_file_and_server_name(cli: Cli, tls_server: tuple[int, Path]) -> None:
    port, ca_file = tls_server
    server = f"127.0.0.1:{port}"
    ok = cli.ok(
        "orgs",
        "create",
        "--name",
        "Over TLS",
        "-q",
        *("--server", server, "--ca-file", str(ca_file), "--tls-server-name", TLS_NAME),
    )
    assert ok.stdout.startswith("org_")
    # The same from the environment.
    names = cli.json(
        "orgs",
        "list",
        M2MAUTH_SERVER=server,
        M2MAUTH_CA_FILE=str(ca_file),
        M2MAUTH_TLS_SERVER_NAME=TLS_NAME,
    )
    assert [o["name"] for o in names] == ["Over TLS"]
    # The certificate is not for 127.0.0.1, the system roots do not know this CA,
    # and a plaintext client cannot talk to a TLS server: nothing answers.
    assert "cannot reach" in cli.fails(
        3, "orgs", "list", "--server", server, "--ca-file", str(ca_file)
    )
    assert "cannot reach" in cli.fails(
        3, "orgs", "list", "--server", server, "--tls", "--tls-server-name", TLS_NAME
    )
    assert "cannot reach" in cli.fails(3, "orgs", "list", "--server", server)
    # ... and a TLS client cannot talk to a plaintext server.
    assert "cannot reach" in cli.fails(3, "orgs", "list", "--tls")
