"""Start-up and local-command errors as users see them: the real ``m2mauth`` command
in a subprocess, one line on stderr naming the cause and the fix, and the
documented exit code (2: a setting to fix; 3: the database did not answer).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_serve import clean_env

M2MAUTH = str(Path(sys.executable).parent / "m2mauth")
ROOT_KEY = "A" * 43 + "="
ISSUER = ("--issuer", "https://auth.example.com")
HTTP_0 = ("--http-port", "0")
PORTS_0 = ("--grpc-port", "0", *HTTP_0, "--metrics-port", "0")


def fails(args: list[str], cwd: Path, exit_code: int) -> str:
    """Run ``m2mauth ARGS``; expect ``exit_code`` and exactly one line on stderr, an
    ``error:`` line; return it."""
    done = subprocess.run(
        [M2MAUTH, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == exit_code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in done.stdout
    return lines[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port that something else is listening on, as `make run` would be."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_busy_grpc_port_is_named_with_the_flag_that_moves_it(
    tmp_path: Path, taken_port: int, processes: str
) -> None:
    line = fails(
        ["serve", "--dev", "--processes", processes, "--grpc-port", str(taken_port), *HTTP_0],
        tmp_path,
        2,
    )
    assert line == (
        f"error: cannot start: the gRPC port 127.0.0.1:{taken_port} is already in use "
        "(by another m2mauth?): stop what holds it, or pass --grpc-port PORT "
        "(0 picks a free one)"
    )
    # Nothing was done before the check: no database, no root key.
    assert not (tmp_path / "var" / "m2mauth.db").exists()


def test_a_busy_http_port_is_named_with_the_flag_that_moves_it(
    tmp_path: Path, taken_port: int
) -> None:
    line = fails(
        ["serve", "--dev", "--grpc-port", "0", "--http-port", str(taken_port)], tmp_path, 2
    )
    assert f"the OAuth HTTP port 127.0.0.1:{taken_port} is already in use" in line
    assert line.endswith("pass --http-port PORT (0 picks a free one)")


def test_the_http_edge_names_its_busy_port(tmp_path: Path, taken_port: int) -> None:
    line = fails(
        ["serve-http", "--upstream", "127.0.0.1:1", "--http-port", str(taken_port)], tmp_path, 2
    )
    assert f"the OAuth HTTP port 127.0.0.1:{taken_port} is already in use" in line
    assert "--http-port" in line


def test_an_address_not_of_this_host_names_the_host_flag(tmp_path: Path) -> None:
    # 192.0.2.0/24 is reserved for documentation (RFC 5737): never this host's.
    line = fails(
        ["serve", "--dev", "--grpc-host", "192.0.2.1", "--grpc-port", "0", "--http-port", "0"],
        tmp_path,
        2,
    )
    assert line.startswith("error: cannot start: cannot listen for gRPC on 192.0.2.1:0 (")
    assert line.endswith("check --grpc-host and --grpc-port")


@pytest.mark.parametrize(
    ("url", "named"),
    # A value that is not a URL is not repeated either: it may be user:password@host.
    [("notaurl", "(not a URL)"), ("mysql://root:hunter2@db/m2m", "mysql://...")],
)
def test_an_unsupported_database_url_says_which_databases_work(
    tmp_path: Path, url: str, named: str
) -> None:
    line = fails(["serve", "--database-url", url, "--root-key", ROOT_KEY, *ISSUER], tmp_path, 2)
    assert line == (
        f"error: cannot start: --database-url: unsupported database URL {named}: "
        "m2mauth supports SQLite and PostgreSQL (and memory:// for tests); "
        "use sqlite:///path/to/m2mauth.db, postgresql://user@host:5432/dbname or memory://"
    )
    # The same from the local commands.
    assert named in fails(["migrate", "--database-url", url], tmp_path, 2)
    assert named in fails(
        ["admin-key", "create", "--database-url", url, "--root-key", ROOT_KEY], tmp_path, 2
    )


def test_outside_dev_serve_wants_the_deployments_issuer(tmp_path: Path) -> None:
    """Each replica defaulting to its own host:port would sign with its own issuer."""
    production = ["serve", "--database-url", f"sqlite:///{tmp_path / 'x.db'}", *PORTS_0]
    production += ["--root-key", ROOT_KEY]
    line = fails(production, tmp_path, 2)
    assert line == (
        "error: cannot start: no issuer: set --issuer / M2MAUTH_ISSUER to the public https "
        "URL partners use (e.g. https://auth.example.com); every replica needs the same one"
    )
    line = fails([*production, "--issuer", "http://auth.example.com"], tmp_path, 2)
    assert "--issuer 'http://auth.example.com' must use https (RFC 8414 section 2)" in line
    # Given: the start goes on, to the next check (this database is not migrated).
    line = fails([*production, *ISSUER], tmp_path, 2)
    assert line == "error: cannot start: database is not migrated: run `m2mauth migrate`"


def test_several_problems_are_still_one_line(tmp_path: Path) -> None:
    line = fails(["serve", "--database-url", "notaurl"], tmp_path, 2)
    assert "unsupported database URL" in line
    assert "; no root key: set M2MAUTH_ROOT_KEY" in line


@pytest.mark.parametrize(
    ("command", "doing"),
    [
        (["serve", *PORTS_0, "--root-key", ROOT_KEY, *ISSUER], "cannot start"),
        (["migrate"], "migration failed"),
        (["admin-key", "create", "--root-key", ROOT_KEY], "cannot create an admin key"),
    ],
)
def test_an_unreachable_database_is_exit_3_in_one_line(
    tmp_path: Path, closed_port: int, command: list[str], doing: str
) -> None:
    url = f"postgresql://m2mauth:hunter2@127.0.0.1:{closed_port}/m2mauth"
    line = fails([*command, "--database-url", url], tmp_path, 3)
    assert line.startswith(
        f"error: {doing}: the database at postgresql://m2mauth:***@127.0.0.1:{closed_port}"
        "/m2mauth is unreachable ("
    )
    assert "Connection refused" in line
    assert "sqlalche.me" not in line
    assert line.endswith(
        "check --database-url / M2MAUTH_DATABASE_URL and that the database server is running"
    )
    assert "hunter2" not in line
