"""The local commands (migrate, admin-key create): every failure is one line, exit 2."""

from __future__ import annotations

import pytest

from tests.cli.conftest import run_cli


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["migrate", "--database-url", "postgresql://u@h:abc/db"],
            "migration failed",
        ),
        (
            ["migrate", "--database-url", "mysql://root:hunter2@db/m2m"],
            "unsupported database URL mysql://...",
        ),
        (
            ["migrate", "--database-url", "memory://demo"],
            "migrate on memory:// would change nothing that lasts",
        ),
        (
            ["admin-key", "create", "--database-url", "memory://demo", "--root-key", "x" * 44],
            "admin-key create on memory:// would change nothing that lasts",
        ),
        (
            ["admin-key", "create", "--database-url", "postgresql://u@h:abc/db", "--root-key", "k"],
            "cannot open the database",
        ),
    ],
)
def test_a_local_command_fails_in_one_line(args: list[str], expected: str) -> None:
    result = run_cli(args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ")
    assert expected in line
    assert "hunter2" not in result.stderr
