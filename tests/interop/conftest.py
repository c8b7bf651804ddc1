"""Interop: OAuth clients nobody here wrote, against the real shim on a real socket.

The servers are those of ``tests/http`` (``running_shim``), so interop failures
are about the wire, not about a different wiring. One more variant,
:func:`running_clocked_shim`, gives the test a hand on the server's clock: a
signing key leaves the JWKS a full token lifetime after rotation, which a test
can only wait for by moving time on the server (never in the client).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import jwt
import pytest

from m2mauth.bootstrap import bootstrap
from m2mauth.core.clock import utc_now
from m2mauth.core.interfaces import Store
from m2mauth.grpc.server import GrpcServer
from m2mauth.http.app import create_http_app
from m2mauth.http.backend import InProcessBackend
from m2mauth.http.metrics import ShimMetrics
from m2mauth.http.server import bind, start_http_server
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from tests.grpc.conftest import make_settings, start_server
from tests.http.conftest import BACKENDS, Shim, running_shim, shim_settings

NODE_DIR = Path(__file__).resolve().parent / "node"
REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_PACKAGES = ("openid-client", "jose")
# The TypeScript client's toolchain and runtime: the root workspace (make test runs npm ci).
CLIENT_PACKAGES = (
    "typescript",
    "@bufbuild/protobuf",
    "@connectrpc/connect",
    "@connectrpc/connect-node",
)
NODE_TIMEOUT_SECONDS = 60


class MovableClock:
    """The server's clock: real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utc_now() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)

    def reset(self) -> None:
        self.offset = timedelta(0)


@dataclass
class ClockedShim(Shim):
    clock: MovableClock = field(default_factory=MovableClock)


@contextmanager
def running_clocked_shim(store: Store, clock: MovableClock) -> Iterator[ClockedShim]:
    """``running_shim(store, "in_process")`` with ``clock`` as the server's clock."""
    sock = bind("127.0.0.1", 0)
    config = shim_settings(sock.getsockname()[1])
    container = bootstrap(config, store=store, root_key=secrets.token_bytes(32), clock=clock)
    container.start()
    backend = InProcessBackend(container.servicers.tokens, store.ping)
    metrics = ShimMetrics()
    http = start_http_server(create_http_app(backend, config.issuer, metrics), sock, grace=1)
    try:
        _, admin_key = container.admin_keys.create_local(None)
        yield ClockedShim(
            base_url=f"http://127.0.0.1:{http.port}",
            issuer=config.issuer,
            container=container,
            admin_key=admin_key,
            backend_kind="in_process",
            metrics=metrics,
            clock=clock,
        )
    finally:
        http.stop(1)
        container.close()
        sock.close()


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[SqlStore]:
    migrate(sqlite_url)
    store = SqlStore(sqlite_url)
    yield store
    store.close()


@pytest.fixture(params=BACKENDS)
def shim(request: pytest.FixtureRequest, sqlite_store: SqlStore) -> Iterator[Shim]:
    """The shim over each backend: a client must not see which one it talks to."""
    with running_shim(sqlite_store, request.param) as running:
        yield running


@pytest.fixture
def in_process_shim(sqlite_store: SqlStore) -> Iterator[Shim]:
    with running_shim(sqlite_store, "in_process") as running:
        yield running


@pytest.fixture
def clocked_shim(sqlite_store: SqlStore) -> Iterator[ClockedShim]:
    with running_clocked_shim(sqlite_store, MovableClock()) as running:
        yield running


# --- verifying what a client got -------------------------------------------------


def verify_access_token(shim: Shim, token: str, org_id: str, client_id: str) -> dict[str, Any]:
    """Verify ``token`` as a resource server would: the signature against the published
    JWKS, and the RFC 9068 section 4 checks (typ, iss, aud, exp)."""
    header = jwt.get_unverified_header(token)
    # RFC 9068 section 4: the resource server MUST check typ is at+jwt.
    assert header["typ"] == "at+jwt", header
    signing_key = jwt.PyJWKClient(f"{shim.base_url}/oauth2/jwks").get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        signing_key.key,
        algorithms=[header["alg"]],
        issuer=shim.issuer,
        audience=shim.issuer,  # the default audience is the issuer
        options={"require": ["iss", "aud", "exp", "iat", "sub", "jti", "client_id"]},
    )
    assert header["alg"] == "ES256", header  # what the fixture configures
    assert claims["org_id"] == org_id, claims
    assert claims["client_id"] == client_id, claims
    return claims


# --- Node ---------------------------------------------------------------------------


# CI (.ci/run) requires the Node clients; elsewhere a machine without Node.js skips
# them, loudly (see pytest_terminal_summary below).
REQUIRE_NODE_ENV = "M2MAUTH_REQUIRE_NODE"
NODE_SKIPPED = "Node interop tests SKIPPED"
_node_ready: dict[str, str] = {}


def _node_required() -> bool:
    return os.environ.get(REQUIRE_NODE_ENV) == "1" or os.environ.get("CI") == "true"


def _node_missing(reason: str) -> NoReturn:
    if _node_required():
        pytest.fail(f"{reason} (required in CI)", pytrace=False)
    pytest.skip(f"{NODE_SKIPPED}: {reason}")


def _install_problems() -> list[str]:
    """How tests/interop/node/node_modules differs from the pins in its package.json."""
    pinned = json.loads((NODE_DIR / "package.json").read_text())["devDependencies"]
    problems = []
    for package in NODE_PACKAGES:
        manifest = NODE_DIR / "node_modules" / package / "package.json"
        if not manifest.is_file():
            problems.append(f"{package} is not installed")
        elif (installed := json.loads(manifest.read_text())["version"]) != pinned[package]:
            problems.append(f"{package} is {installed}, package.json pins {pinned[package]}")
    return problems


def node_executable() -> str:
    """``node``, with the pinned clients installed (by ``npm ci`` in tests/interop/node,
    the first time a test needs them), or a skip that says so (a failure in CI)."""
    if "node" in _node_ready:
        return _node_ready["node"]
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _node_missing("node and npm are not on PATH: install Node.js 20 to run them")
    if _install_problems():
        # Here, not in `make test`: the clients are 1 MB, and only these tests need them.
        print(f"\ninstalling the Node clients of the interop tests: npm ci in {NODE_DIR.name}/")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.fail(f"npm ci in tests/interop/node failed: {last}", pytrace=False)
    if problems := _install_problems():
        pytest.fail(f"tests/interop/node: {'; '.join(problems)} after npm ci", pytrace=False)
    _node_ready["node"] = node
    return node


def typescript_client_node() -> str:
    """``node`` with the root workspace's packages for the TypeScript client, which
    `make test` installs (npm ci at the root); a loud skip without them (CI: a failure)."""
    node = node_executable()
    root = json.loads((REPO_ROOT / "package.json").read_text())["devDependencies"]
    client = json.loads((REPO_ROOT / "clients/typescript/package.json").read_text())
    pinned = {**client["dependencies"], **client["devDependencies"], **root}
    problems = []
    for package in CLIENT_PACKAGES:
        manifest = REPO_ROOT / "node_modules" / package / "package.json"
        if not manifest.is_file():
            problems.append(f"{package} is not installed")
        elif (installed := json.loads(manifest.read_text())["version"]) != pinned[package]:
            problems.append(f"{package} is {installed}, package.json pins {pinned[package]}")
    if problems:
        _node_missing(f"node_modules: {'; '.join(problems)}: run `npm ci` (make test does it)")
    return node


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if NODE_SKIPPED in str(getattr(report, "longrepr", ""))
    ]
    if skipped:
        terminalreporter.write_sep("!", f"{NODE_SKIPPED}: {len(skipped)} tests", red=True)


def run_node(script: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Run ``tests/interop/node/<script>`` with ``payload`` as JSON on stdin
    (secrets stay off the command line) and return the JSON it prints."""
    node = node_executable()
    completed = subprocess.run(
        [node, str(NODE_DIR / script)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_SECONDS,
        cwd=NODE_DIR,
        check=False,
    )
    assert completed.returncode == 0, (
        f"node {script} exited {completed.returncode}\n"
        f"stdout: {completed.stdout}\nstderr: {completed.stderr}"
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


# --- gRPC, for the generated clients ----------------------------------------------


@dataclass
class GrpcEndpoint:
    """A real m2mauth gRPC server on a port of its own, and what a client needs."""

    url: str
    port: int
    admin_key: str
    issuer: str
    container: Any
    server: GrpcServer


@pytest.fixture
def grpc_endpoint(sqlite_store: SqlStore) -> Iterator[GrpcEndpoint]:
    container = bootstrap(make_settings(), store=sqlite_store, root_key=secrets.token_bytes(32))
    container.start()
    server = start_server(container)
    try:
        _, admin_key = container.admin_keys.create_local(None)
        yield GrpcEndpoint(
            url=f"http://127.0.0.1:{server.port}",
            port=server.port,
            admin_key=admin_key,
            issuer=container.settings.issuer,
            container=container,
            server=server,
        )
    finally:
        server.stop(0)
        container.close()
