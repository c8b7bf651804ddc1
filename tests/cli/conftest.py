"""The CLI run in-process (click's CliRunner) against a real gRPC server on port 0."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner, Result

from m2mauth.cli import main
from m2mauth.grpc.server import GrpcServer
from tests.grpc.conftest import admin_key, container, server  # noqa: F401

# Every variable the client commands read.
CLIENT_VARIABLES = (
    "M2MAUTH_SERVER",
    "M2MAUTH_ADMIN_KEY",
    "M2MAUTH_TLS",
    "M2MAUTH_CA_FILE",
    "M2MAUTH_TLS_SERVER_NAME",
    "M2MAUTH_TIMEOUT",
    "M2MAUTH_OUTPUT",
    "M2MAUTH_CLIENT_ID",
    "M2MAUTH_CLIENT_SECRET",
)


@pytest.fixture(autouse=True)
def _no_client_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own M2MAUTH_* client settings must not leak into the tests."""
    for name in CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def run_cli(args: Sequence[str], env: dict[str, str] | None = None, stdin: str = "") -> Result:
    """Run ``m2mauth ARGS``; whatever happens, it must end without a traceback."""
    result = CliRunner().invoke(main, list(args), env=env, input=stdin)
    everything = result.stdout + result.stderr
    assert "Traceback" not in everything, everything
    # CliRunner stores an exception that escaped the command; only exits may escape.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"m2mauth {' '.join(args)} raised {result.exception!r}"
    )
    return result


def one_error_line(result: Result) -> str:
    """The failure's stderr: exactly one line, starting with "error: "."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@dataclass
class Cli:
    """``m2mauth`` pointed at the test server with an environment admin key."""

    server: str
    admin_key: str

    def env(self, **extra: str) -> dict[str, str]:
        return {"M2MAUTH_SERVER": self.server, "M2MAUTH_ADMIN_KEY": self.admin_key, **extra}

    def run(self, *args: str, stdin: str = "", **env: str) -> Result:
        return run_cli(args, self.env(**env), stdin)

    def ok(self, *args: str, stdin: str = "", **env: str) -> Result:
        result = self.run(*args, stdin=stdin, **env)
        assert result.exit_code == 0, f"m2mauth {' '.join(args)}: {result.stderr}"
        return result

    def text(self, *args: str, **env: str) -> str:
        """The stdout of a successful run, stripped: e.g. the id that -q prints."""
        return self.ok(*args, **env).stdout.strip()

    def json(self, *args: str, **env: str) -> Any:
        return json.loads(self.ok(*args, "--output", "json", **env).stdout)

    def fails(self, exit_code: int, *args: str, **env: str) -> str:
        """Run, expect ``exit_code`` and one error line; return that line."""
        result = self.run(*args, **env)
        assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
        assert result.stdout == "", result.stdout
        return one_error_line(result)


@pytest.fixture
def cli(server: GrpcServer, admin_key: str) -> Cli:  # noqa: F811
    return Cli(f"127.0.0.1:{server.port}", admin_key)
