"""The ``m2mauth`` command: run the server and its local bootstrap commands."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from m2mauth import logs
from m2mauth.config import SETTINGS, Settings
from m2mauth.core.errors import DomainError

F = TypeVar("F", bound=Callable[..., Any])

LOCAL_SETTINGS = ("database_url", "root_key", "root_key_file")


def settings_options(names: tuple[str, ...] | None = None) -> Callable[[F], F]:
    """Add one click option per setting (flag + M2MAUTH_* env var) from config.SETTINGS."""

    def decorate(func: F) -> F:
        chosen = [s for s in SETTINGS if names is None or s.name in names]
        for setting in reversed(chosen):
            func = click.option(
                setting.flag,
                setting.name,
                type=setting.type,
                default=setting.default,
                envvar=setting.envvar,
                show_envvar=True,
                show_default=setting.default not in ("", None),
                help=setting.help,
            )(func)
        return click.option(
            "--dev",
            is_flag=True,
            envvar="M2MAUTH_DEV",
            show_envvar=True,
            help="Embedded default: SQLite and a generated root key under --data-dir, "
            "migrated automatically, and a first admin key printed once.",
        )(
            click.option(
                "--data-dir",
                type=click.Path(path_type=Path, file_okay=False),
                default=Path("var"),
                envvar="M2MAUTH_DATA_DIR",
                show_envvar=True,
                show_default=True,
                help="Where --dev keeps its database and root key.",
            )(func)
        )

    return decorate


def _settings(options: dict[str, Any]) -> Settings:
    return Settings(**options).with_defaults()


def _fail(message: str) -> None:
    click.echo(f"m2mauth: {message}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="m2mauth")
def main() -> None:
    """m2mauth: OAuth 2.0 client_credentials for machines, gRPC first.

    \b
    Examples:
      m2mauth serve --dev                     # embedded SQLite under ./var
      m2mauth migrate --database-url postgresql://m2m@db/m2mauth
      m2mauth admin-key create --organization org_01J...
    """


@main.command()
@settings_options(("database_url",))
def migrate(**options: Any) -> None:
    """Apply the database migrations (safe to run again).

    \b
    Example:
      M2MAUTH_DATABASE_URL=postgresql://m2m@db/m2mauth m2mauth migrate
    """
    from m2mauth.store.schema import migrate as run_migrations

    settings = _settings(options)
    if not settings.database_url:
        _fail("no database: set --database-url / M2MAUTH_DATABASE_URL (or use --dev)")
    _prepare_sqlite_dir(settings)
    try:
        run_migrations(settings.database_url)
    except Exception as exc:  # any driver error: say it in one line, no traceback
        _fail(f"migration failed: {exc}")
    click.echo("database migrated")


@main.group("admin-key")
def admin_key() -> None:
    """Admin keys for the management API (local: needs database access)."""


@admin_key.command("create")
@click.option(
    "--organization",
    "organization_id",
    default=None,
    help="Scope the key to one organization (default: an environment key for everything).",
)
@settings_options(LOCAL_SETTINGS)
def admin_key_create(organization_id: str | None, **options: Any) -> None:
    """Create an admin key and print it once, as the last line.

    \b
    Examples:
      m2mauth admin-key create --dev
      m2mauth admin-key create --organization org_01J... --database-url ...
    """
    from m2mauth.app import build_container, load_root_key
    from m2mauth.store.sql import SqlStore

    settings = _settings(options)
    problems = [p for p in settings.problems() if p.startswith(("no database", "no root key"))]
    if problems:
        _fail("; ".join(problems))
    store = SqlStore(settings.database_url)
    try:
        store.check_schema()
        root, _ = load_root_key(settings)
        container = build_container(settings, store, root)
        key, plaintext = container.admin_keys.create(organization_id)
    except DomainError as exc:
        _fail(exc.message)
    except Exception as exc:  # schema or root-key problems: one line, no traceback
        _fail(str(exc))
    finally:
        store.close()
    scope = f"organization {organization_id}" if organization_id else "the environment"
    click.echo(f"Admin key {key.id} for {scope}. It is shown only now; store it safely:")
    click.echo(plaintext)


def _prepare_sqlite_dir(settings: Settings) -> None:
    prefix = "sqlite:///"
    if settings.database_url.startswith(prefix):
        Path(settings.database_url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


@main.command()
@settings_options()
def serve(**options: Any) -> None:
    """Run the gRPC server.

    \b
    Examples:
      m2mauth serve --dev
      M2MAUTH_DATABASE_URL=postgresql://m2m@db/m2mauth M2MAUTH_ROOT_KEY=... \\
        m2mauth serve --grpc-host 0.0.0.0 --issuer https://auth.example.com
    """
    from m2mauth.serve import run

    settings = _settings(options)
    problems = settings.problems()
    if problems:
        _fail("\n  ".join(["cannot start:", *problems]))
    logs.configure(settings.log_level, settings.log_format)
    if settings.dev:
        _prepare_sqlite_dir(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sys.exit(run(settings, stop, echo=click.echo))


if __name__ == "__main__":  # pragma: no cover
    main()
