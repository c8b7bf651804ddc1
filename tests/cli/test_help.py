"""Every command explains itself with an example; help stays fast (no grpc imported)."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from m2mauth.cli import main
from tests.cli.conftest import run_cli


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        if isinstance(command, click.Group):
            paths += command_paths(command, path)
        else:
            paths.append(path)
    return paths


COMMANDS = command_paths(main)
LOCAL_COMMANDS = ("serve", "serve-http", "migrate", "admin-key")
CLIENT_COMMANDS = [p for p in COMMANDS if p[0] not in LOCAL_COMMANDS]


def test_every_client_command_of_the_issue_exists() -> None:
    assert set(CLIENT_COMMANDS) == {
        *(("orgs", verb) for verb in ("create", "get", "list", "update", "delete")),
        ("orgs", "revoke-tokens"),
        *(("apps", verb) for verb in ("create", "get", "list", "update", "delete")),
        ("apps", "revoke-tokens"),
        ("apps", "usage"),
        *(("apps", "federation", verb) for verb in ("add", "list", "remove")),
        *(("admin-keys", verb) for verb in ("create", "list", "get", "revoke")),
        *(("secrets", verb) for verb in ("create", "list", "revoke")),
        ("keys", "list"),
        ("keys", "rotate"),
        ("audit", "list"),
        ("token",),
        ("introspect",),
        ("revoke",),
    }


@pytest.mark.parametrize("path", [(), *COMMANDS], ids=lambda p: " ".join(p) or "m2mauth")
def test_help_shows_an_example(path: tuple[str, ...]) -> None:
    result = run_cli([*path, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert "m2mauth " in result.stdout.split("Example", 1)[1]


@pytest.mark.parametrize("path", CLIENT_COMMANDS, ids=" ".join)
def test_client_commands_take_the_connection_options(path: tuple[str, ...]) -> None:
    text = run_cli([*path, "--help"]).stdout
    for option in ("--server", "--tls", "--ca-file", "--tls-server-name", "--timeout", "--output"):
        assert option in text, option
    assert "M2MAUTH_SERVER" in text
    if path != ("token",):
        assert "--admin-key" in text


def test_help_does_not_import_grpc_or_the_server_stack() -> None:
    probe = (
        "import sys\n"
        "from m2mauth.cli import main\n"
        "for args in (['--help'], ['orgs', 'list', '--help'], ['token', '--help']):\n"
        "    try:\n"
        "        main(args, prog_name='m2mauth')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ('grpc', 'google', 'sqlalchemy', 'cryptography', 'm2mauth.v1', 'm2mauth.store')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stderr.strip() == "[]"
    assert "Usage: m2mauth orgs list" in result.stdout
