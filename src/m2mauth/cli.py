"""The ``m2mauth`` command: the server, its local bootstrap commands, and the admin client.

``serve``, ``migrate`` and ``admin-key create`` work on the local database. Every
other command is a gRPC client of a running server, like any other client: it
imports grpc and the generated stubs only when it runs (see ``cli_support``),
so ``m2mauth --help`` stays fast.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from m2mauth import logs
from m2mauth.cli_support.failure import ClientCommand, ClientGroup, usage_failure
from m2mauth.cli_support.options import (
    DURATION,
    TIME_AGO,
    TIME_AHEAD,
    ClientCredentials,
    Connection,
    KeyCredentials,
    Output,
    client_credential_options,
    connection_options,
    limit_option,
    output_options,
)
from m2mauth.config import EDGE_ONLY, EDGE_SETTINGS, SETTINGS, Settings
from m2mauth.core.algorithms import SIGNING_ALGORITHMS
from m2mauth.core.errors import DomainError
from m2mauth.core.models import AdminKeyRole

F = TypeVar("F", bound=Callable[..., Any])

LOCAL_SETTINGS = ("database_url", "root_key", "root_key_file")
SERVE_SETTINGS = tuple(s.name for s in SETTINGS if s.name not in EDGE_ONLY)
ROLES = tuple(role.value for role in AdminKeyRole)


def settings_options(names: tuple[str, ...] | None = None, *, dev: bool = True) -> Callable[[F], F]:
    """Add one click option per setting (flag + M2MAUTH_* env var) from config.SETTINGS."""

    def decorate(func: F) -> F:
        chosen = [s for s in SETTINGS if names is None or s.name in names]
        for setting in reversed(chosen):
            func = click.option(
                setting.flag,
                setting.name,
                type=setting.type,
                # A bool setting is a flag: --allow-plaintext, not --allow-plaintext true.
                is_flag=setting.type is bool,
                default=setting.default,
                envvar=setting.envvar,
                show_envvar=True,
                show_default=setting.default not in ("", None, False),
                help=setting.help,
            )(func)
        if not dev:
            return func
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


def _fail(message: str, code: int = 2) -> NoReturn:
    """End a local command (serve, migrate, admin-key) with one line on stderr: the
    cause and the fix. Exit 2: a setting to fix; 3: the database did not answer."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _store_failure(exc: Exception, settings: Settings, doing: str) -> NoReturn:
    """One line for a store that failed under a local command; never a traceback."""
    from sqlalchemy.exc import DBAPIError

    from m2mauth.core.errors import StoreUnavailable
    from m2mauth.startup import unreachable

    if isinstance(exc, DBAPIError | StoreUnavailable):
        failure = unreachable(exc, settings.database_url)
        _fail(f"{doing}: {failure}", failure.code)
    _fail(f"{doing}: {exc}")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="m2mauth")
def main() -> None:
    """m2mauth: OAuth 2.0 client_credentials for machines, gRPC first.

    \b
    Examples:
      m2mauth serve --dev                     # embedded SQLite under ./var
      m2mauth migrate --database-url postgresql://m2m@db/m2mauth
      m2mauth admin-key create --organization org_01J...

    \b
    The other commands are clients of a running server (M2MAUTH_SERVER,
    default 127.0.0.1:50051) and use the admin key in M2MAUTH_ADMIN_KEY:
      ORG=$(m2mauth orgs create --name Acme -q)
      APP=$(m2mauth apps create --org "$ORG" --name billing --scope invoices:read -q)
      m2mauth secrets create "$APP"           # the secret, shown only once
      m2mauth apps list -o json               # JSON for scripts

    \b
    Exit codes: 0 ok, 1 the server answered with an error, 2 usage error,
    3 the server could not be reached.
    """


@main.command()
@settings_options(("database_url",))
def migrate(**options: Any) -> None:
    """Apply the database migrations (safe to run again).

    \b
    Example:
      M2MAUTH_DATABASE_URL=postgresql://m2m@db/m2mauth m2mauth migrate
    """
    from m2mauth.store import UnsupportedDatabaseUrl, open_store

    settings = _settings(options)
    if not settings.database_url:
        _fail("no database: set --database-url / M2MAUTH_DATABASE_URL (or use --dev)")
    _refuse_memory(settings, "migrate")
    _prepare_sqlite_dir(settings)
    try:
        store = open_store(settings.database_url, pool_size=1)
    except UnsupportedDatabaseUrl as exc:
        _fail(str(exc))
    except Exception as exc:  # a malformed URL the driver refuses: one line, no traceback
        _fail(f"migration failed: {exc}")
    try:
        store.migrate()
    except Exception as exc:  # any driver error: say it in one line, no traceback
        _store_failure(exc, settings, "migration failed")
    finally:
        store.close()
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
@click.option("--name", default="bootstrap", show_default=True, help="What the key is for.")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="admin",
    show_default=True,
    help="What the key may do (README: Roles).",
)
@settings_options(LOCAL_SETTINGS)
def admin_key_create(organization_id: str | None, name: str, role: str, **options: Any) -> None:
    """Create an admin key and print it once, as the last line.

    \b
    Examples:
      m2mauth admin-key create --dev
      m2mauth admin-key create --organization org_01J... --database-url ...
    """
    from m2mauth.bootstrap import bootstrap, load_root_key
    from m2mauth.core.errors import StoreUnavailable
    from m2mauth.store import UnsupportedDatabaseUrl, open_store

    settings = _settings(options)
    problems = [p for p in settings.problems() if p.startswith(("no database", "no root key"))]
    if problems:
        _fail("; ".join(problems))
    _refuse_memory(settings, "admin-key create")
    try:
        store = open_store(settings.database_url, pool_size=1)
    except UnsupportedDatabaseUrl as exc:
        _fail(str(exc))
    except Exception as exc:  # a malformed URL the driver refuses: one line, no traceback
        _fail(f"cannot open the database: {exc}")
    try:
        store.check_schema()
        root, _ = load_root_key(settings)
        app = bootstrap(settings, store=store, root_key=root)
        key, plaintext = app.admin_keys.create_local(
            organization_id, name=name, role=AdminKeyRole(role)
        )
    except StoreUnavailable as exc:
        _store_failure(exc, settings, "cannot create an admin key")
    except DomainError as exc:
        _fail(exc.message)
    except Exception as exc:  # schema, root-key or driver problems: one line, no traceback
        _store_failure(exc, settings, "cannot create an admin key")
    finally:
        store.close()
    scope = f"organization {organization_id}" if organization_id else "the environment"
    click.echo(
        f"Admin key {key.id} ({key.role.value}) for {scope}. It is shown only now; store it safely:"
    )
    click.echo(plaintext)


def _refuse_memory(settings: Settings, command: str) -> None:
    """A local command on memory:// would change a database that is gone when it exits."""
    from m2mauth.database_urls import MEMORY_SCHEME, scheme_of

    if scheme_of(settings.database_url) == MEMORY_SCHEME:
        _fail(
            f"{command} on memory:// would change nothing that lasts: its data lives in the "
            "serving process (serve --dev --database-url memory:// prints its first admin key)"
        )


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals() -> threading.Event:
    """An Event set by the first SIGTERM or SIGINT: the server then stops gracefully.

    The handler runs on the main thread between two bytecodes, possibly inside
    ``stop.set()`` itself, whose lock is not reentrant: a second Ctrl+C there
    deadlocked the server, which then ignored every signal but SIGKILL. So the
    first signal hands both back to their default action before setting the
    Event, and a second one ends the process at once.
    """
    stop = threading.Event()

    def request_stop(*_: object) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        stop.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, request_stop)
    # SIGHUP reloads certificates once the server runs (m2mauth.tls.on_sighup); until
    # then it must not end the process, which is its default action.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return stop


def _prepare_sqlite_dir(settings: Settings) -> None:
    prefix = "sqlite:///"
    if settings.database_url.startswith(prefix):
        Path(settings.database_url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


@main.command()
@settings_options(SERVE_SETTINGS)
def serve(**options: Any) -> None:
    """Run the gRPC server and the OAuth HTTP endpoints.

    SIGHUP reloads the TLS certificates (every worker's, with --processes).

    \b
    Examples:
      m2mauth serve --dev
      M2MAUTH_DATABASE_URL=postgresql://m2m@db/m2mauth M2MAUTH_ROOT_KEY=... \\
        m2mauth serve --grpc-host 0.0.0.0 --http-host 0.0.0.0 \\
        --tls-cert cert.pem --tls-key key.pem --issuer https://auth.example.com
    """
    from m2mauth.serve import run

    settings = _settings(options)
    problems = settings.problems()
    if problems:
        _fail(f"cannot start: {'; '.join(problems)}")
    logs.configure(settings.log_level, settings.log_format)
    if settings.dev:
        _prepare_sqlite_dir(settings)
    stop = stop_on_signals()
    sys.exit(run(settings, stop, echo=click.echo))


@main.command("serve-http")
@settings_options(EDGE_SETTINGS, dev=False)
def serve_http(**options: Any) -> None:
    """Run only the OAuth HTTP endpoints, as a gRPC client of another server.

    For an edge host that must hold no database credentials and no private
    keys. --issuer is the public URL partners use, where the discovery
    document says the endpoints are; it should be the upstream's --issuer,
    which the document advertises as the issuer (tokens carry it), and a
    mismatch is logged.
    SIGHUP reloads the HTTP certificate.

    \b
    Example:
      m2mauth serve-http --upstream auth-core.internal:50051 \\
        --upstream-ca internal-ca.pem --upstream-cert edge.pem --upstream-key edge.key \\
        --http-host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem \\
        --issuer https://auth.example.com
    """
    from m2mauth.serve import run_http_edge

    settings = Settings(**options)
    problems = settings.edge_problems()
    if problems:
        _fail(f"cannot start: {'; '.join(problems)}")
    logs.configure(settings.log_level, settings.log_format)
    stop = stop_on_signals()
    sys.exit(run_http_edge(settings, stop, echo=click.echo))


# --- The admin client: every command below is a gRPC client of a running server. ---

ORG_COLUMNS = (
    ("ID", "id"),
    ("NAME", "name"),
    ("EXTERNAL ID", "external_id"),
    ("ENABLED", "enabled"),
    ("CREATED", "create_time"),
)
APP_COLUMNS = (
    ("ID", "id"),
    ("CLIENT ID", "client_id"),
    ("ORGANIZATION", "organization_id"),
    ("NAME", "name"),
    ("SCOPES", "scopes"),
    ("ENABLED", "enabled"),
    ("CREATED", "create_time"),
)
SECRET_COLUMNS = (
    ("ID", "id"),
    ("HINT", "secret_hint"),
    ("CREATED", "create_time"),
    ("LAST USED", "last_used_time"),
    ("EXPIRES", "expire_time"),
)
KEY_COLUMNS = (
    ("ID", "id"),
    ("ALGORITHM", "algorithm"),
    ("STATE", "state"),
    ("CREATED", "create_time"),
    ("ACTIVATED", "activate_time"),
    ("DEACTIVATED", "deactivate_time"),
    ("RETIRES", "retire_time"),
)
ADMIN_KEY_COLUMNS = (
    ("ID", "id"),
    ("NAME", "name"),
    ("ROLE", "role"),
    ("ORGANIZATION", "organization_id"),
    ("HINT", "key_hint"),
    ("CREATED", "create_time"),
    ("LAST USED", "last_used_time"),
    ("EXPIRES", "expire_time"),
    ("REVOKED", "revoke_time"),
)
AUDIT_COLUMNS = (
    ("TIME", "time"),
    ("ACTOR", "actor"),
    ("ACTION", "action"),
    ("ORGANIZATION", "organization_id"),
    ("APPLICATION", "application_id"),
    ("TARGET", "target"),
    ("DETAILS", "details"),
)

enable_option = click.option(
    "--enable/--disable",
    "enabled",
    default=None,
    help="While disabled, it gets no tokens and its tokens introspect as inactive "
    "(new ones start enabled).",
)


def _echo_done(out: Output, message: str, reply: Any) -> None:
    """A confirmation line for people, or the reply's JSON for scripts."""
    from m2mauth.cli_support.output import echo_json, to_dict

    if out.format == "json":
        echo_json(to_dict(reply))
    else:
        click.echo(message)


def _revoke_time_text(reply: Any) -> str:
    from m2mauth.cli_support.output import field_text

    return field_text(reply, "revoke_time")


# --- organizations ---------------------------------------------------------


@main.group(cls=ClientGroup)
def orgs() -> None:
    """Manage organizations: the platform's customers and partners.

    \b
    Example:
      m2mauth orgs create --name Acme --external-id acme-42
    """


@orgs.command("create")
@click.option("--name", required=True, help="Display name, 1 to 200 characters.")
@click.option("--external-id", help="Its id in your own system; unique.")
@enable_option
@output_options(field=True, quiet="Print only the new organization's id.")
@connection_options()
def orgs_create(
    name: str, external_id: str | None, enabled: bool | None, out: Output, conn: Connection
) -> None:
    """Create an organization (environment admin key).

    \b
    Examples:
      m2mauth orgs create --name Acme --external-id acme-42
      ORG=$(m2mauth orgs create --name Acme -q)
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_one
    from m2mauth.v1 import organization_service_pb2 as org_pb
    from m2mauth.v1 import resources_pb2 as res

    org = res.Organization(name=name, external_id=external_id or "", enabled=enabled)
    with open_session(conn) as s:
        reply = s.call(
            s.orgs.CreateOrganization, org_pb.CreateOrganizationRequest(organization=org)
        )
    if out.quiet:
        click.echo(reply.organization.id)
    else:
        show_one(out, reply.organization)


@orgs.command("get")
@click.argument("org_id", metavar="ORG")
@output_options(field=True)
@connection_options()
def orgs_get(org_id: str, out: Output, conn: Connection) -> None:
    """Show one organization.

    \b
    Example:
      m2mauth orgs get org_01J... -o json
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_one
    from m2mauth.v1 import organization_service_pb2 as org_pb

    with open_session(conn) as s:
        reply = s.call(s.orgs.GetOrganization, org_pb.GetOrganizationRequest(id=org_id))
    show_one(out, reply.organization)


@orgs.command("list")
@limit_option
@output_options()
@connection_options()
def orgs_list(limit: int | None, out: Output, conn: Connection) -> None:
    """List organizations, oldest first.

    \b
    Examples:
      m2mauth orgs list
      m2mauth orgs list --limit 10 -o json
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_list
    from m2mauth.v1 import organization_service_pb2 as org_pb

    with open_session(conn) as s:
        found = s.collect(
            s.orgs.ListOrganizations, org_pb.ListOrganizationsRequest(), "organizations", limit
        )
    show_list(out, found, ORG_COLUMNS, "organizations")


@orgs.command("update")
@click.argument("org_id", metavar="ORG")
@click.option("--name", help="New display name.")
@click.option("--external-id", help="New external id; an empty string clears it.")
@enable_option
@output_options(field=True)
@connection_options()
def orgs_update(
    org_id: str,
    name: str | None,
    external_id: str | None,
    enabled: bool | None,
    out: Output,
    conn: Connection,
) -> None:
    """Change an organization: only the fields given (environment admin key).

    \b
    Examples:
      m2mauth orgs update org_01J... --name "Acme Inc."
      m2mauth orgs update org_01J... --disable     # its apps get no tokens
    """
    from google.protobuf.field_mask_pb2 import FieldMask

    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_one
    from m2mauth.v1 import organization_service_pb2 as org_pb
    from m2mauth.v1 import resources_pb2 as res

    org = res.Organization(id=org_id)
    paths = []
    if name is not None:
        org.name = name
        paths.append("name")
    if external_id is not None:
        org.external_id = external_id
        paths.append("external_id")
    if enabled is not None:
        org.enabled = enabled
        paths.append("enabled")
    if not paths:
        raise usage_failure("nothing to update: pass --name, --external-id, --enable or --disable")
    request = org_pb.UpdateOrganizationRequest(organization=org, update_mask=FieldMask(paths=paths))
    with open_session(conn) as s:
        reply = s.call(s.orgs.UpdateOrganization, request)
    show_one(out, reply.organization)


@orgs.command("delete")
@click.argument("org_id", metavar="ORG")
@click.option("--force", is_flag=True, help="Also delete its applications and their secrets.")
@output_options()
@connection_options()
def orgs_delete(org_id: str, force: bool, out: Output, conn: Connection) -> None:
    """Delete an organization (environment admin key).

    Without --force, an organization that still has applications is not
    deleted.

    \b
    Example:
      m2mauth orgs delete org_01J... --force
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.v1 import organization_service_pb2 as org_pb

    with open_session(conn) as s:
        reply = s.call(
            s.orgs.DeleteOrganization, org_pb.DeleteOrganizationRequest(id=org_id, force=force)
        )
    _echo_done(out, f"deleted organization {org_id}", reply)


@orgs.command("revoke-tokens")
@click.argument("org_id", metavar="ORG")
@output_options()
@connection_options()
def orgs_revoke_tokens(org_id: str, out: Output, conn: Connection) -> None:
    """Revoke every token issued so far to any application of an organization.

    Introspection reports them inactive at once; tokens issued afterwards
    work. Stateless (JWKS) verifiers accept them until they expire.

    \b
    Example:
      m2mauth orgs revoke-tokens org_01J...
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.v1 import organization_service_pb2 as org_pb

    with open_session(conn) as s:
        reply = s.call(
            s.orgs.RevokeOrganizationTokens, org_pb.RevokeOrganizationTokensRequest(id=org_id)
        )
    _echo_done(
        out,
        f"revoked the tokens of organization {org_id} issued until {_revoke_time_text(reply)}",
        reply,
    )


# --- applications ----------------------------------------------------------


@main.group(cls=ClientGroup)
def apps() -> None:
    """Manage M2M applications: the OAuth clients of an organization.

    \b
    Example:
      m2mauth apps create --org org_01J... --name billing-sync --scope invoices:read
    """


def _application_options(func: Any) -> Any:
    for option in reversed(
        (
            click.option("--description", help="Free text for operators."),
            click.option(
                "--scope",
                "scopes",
                multiple=True,
                metavar="SCOPE",
                help="A scope it may request; repeat for several.",
            ),
            click.option(
                "--audience",
                "audiences",
                multiple=True,
                metavar="AUDIENCE",
                help="An audience (RFC 8707 resource) it may request besides the "
                "server's default; repeat for several.",
            ),
            click.option(
                "--ttl",
                type=DURATION,
                help="Lifetime of its tokens: seconds, or 15m, 1h, 1d (0: the server's default).",
            ),
            click.option(
                "--token-quota",
                type=click.IntRange(0),
                metavar="N",
                help="At most N tokens per minute; more are refused with 429 until the "
                "minute ends (0: no quota).",
            ),
            enable_option,
            click.option(
                "--auth-method",
                type=click.Choice(AUTH_METHODS),
                help="How it authenticates at the token endpoint: client_secret (the default) "
                "or private_key_jwt (a JWT signed with a key of --jwks-file; RFC 7523).",
            ),
            click.option(
                "--jwks-file",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                metavar="FILE",
                help="Its public keys, a JWK Set in JSON (RFC 7517 section 5), for "
                "private_key_jwt: public members only, at most 10 keys.",
            ),
            click.option(
                "--jwks-uri",
                metavar="URL",
                help="Instead of --jwks-file: the https URL where it publishes its JWK Set "
                "(fetched by the server, cached 5 minutes).",
            ),
        )
    ):
        func = option(func)
    return func


AUTH_METHODS = ("client_secret", "private_key_jwt")


def _set_auth(
    app: Any,
    auth_method: str | None,
    jwks_file: Path | None,
    jwks_uri: str | None,
    paths: list[str] | None,
) -> None:
    """Put --auth-method, --jwks-file and --jwks-uri into the request (and the
    update mask).

    Switching to client_secret clears the JWK Set (and its URL) in the same
    change, as the server requires: an application never keeps a second way in
    silently. Giving one of file and URL clears the other.
    """
    if jwks_file is not None and jwks_uri is not None:
        raise usage_failure("--jwks-file and --jwks-uri contradict each other: pass one")
    from m2mauth.v1 import resources_pb2 as res

    if auth_method is not None:
        app.token_endpoint_auth_method = (
            res.TOKEN_ENDPOINT_AUTH_METHOD_PRIVATE_KEY_JWT
            if auth_method == "private_key_jwt"
            else res.TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET
        )
    if jwks_file is not None:
        if auth_method == "client_secret":
            raise usage_failure("--jwks-file is for --auth-method private_key_jwt")
        try:
            app.jwks = jwks_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise usage_failure(f"cannot read --jwks-file: {exc.__class__.__name__}") from None
    if jwks_uri is not None:
        if auth_method == "client_secret":
            raise usage_failure("--jwks-uri is for --auth-method private_key_jwt")
        app.jwks_uri = jwks_uri
    if paths is None:
        return
    if auth_method is not None:
        paths.append("token_endpoint_auth_method")
    if jwks_file is not None or jwks_uri is not None or auth_method == "client_secret":
        paths += ["jwks", "jwks_uri"]
    if auth_method is not None:
        # Neither client_secret nor private_key_jwt keeps federated credentials.
        paths.append("federated_credentials")


@apps.command("create")
@click.option("--org", "org_id", required=True, metavar="ORG", help="The owning organization.")
@click.option("--name", required=True, help="Display name, 1 to 200 characters.")
@_application_options
@output_options(field=True, quiet="Print only the new application's id.")
@connection_options()
def apps_create(
    org_id: str,
    name: str,
    description: str | None,
    scopes: tuple[str, ...],
    audiences: tuple[str, ...],
    ttl: int | None,
    token_quota: int | None,
    enabled: bool | None,
    auth_method: str | None,
    jwks_file: Path | None,
    jwks_uri: str | None,
    out: Output,
    conn: Connection,
) -> None:
    """Create an application; then give it a secret with `m2mauth secrets create`
    (or, with --auth-method private_key_jwt --jwks-file, no secret at all).

    \b
    Examples:
      m2mauth apps create --org org_01J... --name billing-sync \\
        --scope invoices:read --scope invoices:write --ttl 15m --token-quota 60
      APP=$(m2mauth apps create --org "$ORG" --name billing-sync -q)
      m2mauth apps create --org org_01J... --name keyed \\
        --auth-method private_key_jwt --jwks-file jwks.json
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_one
    from m2mauth.v1 import application_service_pb2 as app_pb
    from m2mauth.v1 import resources_pb2 as res

    app = res.Application(
        organization_id=org_id,
        name=name,
        description=description or "",
        scopes=scopes,
        audiences=audiences,
        token_ttl_seconds=ttl or 0,
        token_quota_per_minute=token_quota or 0,
        enabled=enabled,
    )
    _set_auth(app, auth_method, jwks_file, jwks_uri, None)
    with open_session(conn) as s:
        reply = s.call(s.apps.CreateApplication, app_pb.CreateApplicationRequest(application=app))
    if out.quiet:
        click.echo(reply.application.id)
    else:
        show_one(out, reply.application)


@apps.command("get")
@click.argument("app_id", metavar="APP")
@output_options(field=True)
@connection_options()
def apps_get(app_id: str, out: Output, conn: Connection) -> None:
    """Show one application.

    \b
    Examples:
      m2mauth apps get app_01J...
      CLIENT_ID=$(m2mauth apps get app_01J... --field client_id)
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_one
    from m2mauth.v1 import application_service_pb2 as app_pb

    with open_session(conn) as s:
        reply = s.call(s.apps.GetApplication, app_pb.GetApplicationRequest(id=app_id))
    show_one(out, reply.application)


@apps.command("list")
@click.option("--org", "org_id", metavar="ORG", help="Only this organization's applications.")
@limit_option
@output_options()
@connection_options()
def apps_list(org_id: str | None, limit: int | None, out: Output, conn: Connection) -> None:
    """List applications, oldest first.

    \b
    Examples:
      m2mauth apps list --org org_01J...
      m2mauth apps list --limit 20 -o json
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_list
    from m2mauth.v1 import application_service_pb2 as app_pb

    request = app_pb.ListApplicationsRequest(organization_id=org_id or "")
    with open_session(conn) as s:
        found = s.collect(s.apps.ListApplications, request, "applications", limit)
    show_list(out, found, APP_COLUMNS, "applications")


@apps.command("update")
@click.argument("app_id", metavar="APP")
@click.option("--name", help="New display name.")
@_application_options
@click.option("--clear-scopes", is_flag=True, help="Remove every scope.")
@click.option("--clear-audiences", is_flag=True, help="Remove every extra audience.")
@output_options(field=True)
@connection_options()
def apps_update(
    app_id: str,
    name: str | None,
    description: str | None,
    scopes: tuple[str, ...],
    audiences: tuple[str, ...],
    ttl: int | None,
    token_quota: int | None,
    enabled: bool | None,
    auth_method: str | None,
    jwks_file: Path | None,
    jwks_uri: str | None,
    clear_scopes: bool,
    clear_audiences: bool,
    out: Output,
    conn: Connection,
) -> None:
    """Change an application: only the fields given.

    --scope and --audience replace the whole list; --jwks-file replaces the
    whole key set (rotate by listing the old and the new key, then the new one).

    \b
    Examples:
      m2mauth apps update app_01J... --scope invoices:read --scope reports:read
      m2mauth apps update app_01J... --disable      # no new tokens; old ones inactive
      m2mauth apps update app_01J... --auth-method private_key_jwt --jwks-file jwks.json
      m2mauth apps update app_01J... --auth-method client_secret   # drops its keys
    """
    from google.protobuf.field_mask_pb2 import FieldMask

    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_one
    from m2mauth.v1 import application_service_pb2 as app_pb
    from m2mauth.v1 import resources_pb2 as res

    if scopes and clear_scopes:
        raise usage_failure("--scope and --clear-scopes contradict each other: pass one")
    if audiences and clear_audiences:
        raise usage_failure("--audience and --clear-audiences contradict each other: pass one")
    app = res.Application(id=app_id)
    paths = []
    if name is not None:
        app.name = name
        paths.append("name")
    if description is not None:
        app.description = description
        paths.append("description")
    if scopes or clear_scopes:
        app.scopes.extend(scopes)
        paths.append("scopes")
    if audiences or clear_audiences:
        app.audiences.extend(audiences)
        paths.append("audiences")
    if ttl is not None:
        app.token_ttl_seconds = ttl
        paths.append("token_ttl_seconds")
    if token_quota is not None:
        app.token_quota_per_minute = token_quota
        paths.append("token_quota_per_minute")
    if enabled is not None:
        app.enabled = enabled
        paths.append("enabled")
    _set_auth(app, auth_method, jwks_file, jwks_uri, paths)
    if not paths:
        raise usage_failure(
            "nothing to update: pass --name, --description, --scope, --audience, --ttl, "
            "--token-quota, --enable/--disable, --auth-method, --jwks-file, --jwks-uri, "
            "--clear-scopes or --clear-audiences"
        )
    request = app_pb.UpdateApplicationRequest(application=app, update_mask=FieldMask(paths=paths))
    with open_session(conn) as s:
        reply = s.call(s.apps.UpdateApplication, request)
    show_one(out, reply.application)


@apps.command("delete")
@click.argument("app_id", metavar="APP")
@output_options()
@connection_options()
def apps_delete(app_id: str, out: Output, conn: Connection) -> None:
    """Delete an application and its secrets; its tokens introspect as inactive.

    \b
    Example:
      m2mauth apps delete app_01J...
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.v1 import application_service_pb2 as app_pb

    with open_session(conn) as s:
        reply = s.call(s.apps.DeleteApplication, app_pb.DeleteApplicationRequest(id=app_id))
    _echo_done(out, f"deleted application {app_id}", reply)


@apps.group("federation", cls=ClientGroup)
def apps_federation() -> None:
    """The workload identities an application trusts (workload identity federation).

    A workload sends its own platform's token (Kubernetes service-account token,
    GitHub Actions OIDC token...) with the application's client_id, and gets the
    application's token: no m2mauth secret at all.

    \b
    Example:
      m2mauth apps federation add app_01J... --switch-method \\
        --issuer https://token.actions.githubusercontent.com \\
        --subject 'repo:acme/billing:*' --audience m2mauth
    """


FEDERATION_COLUMNS = (("ISSUER", "issuer"), ("SUBJECT", "subject"), ("AUDIENCE", "audience"))


def _federation_options(func: Any) -> Any:
    for option in reversed(
        (
            click.option(
                "--issuer",
                required=True,
                metavar="URL",
                help="The platform's OpenID Connect issuer URL (https).",
            ),
            click.option(
                "--subject",
                required=True,
                help='The token\'s sub, exactly, or a prefix ending with "*".',
            ),
            click.option("--audience", required=True, help="A value the token's aud must contain."),
        )
    ):
        func = option(func)
    return func


# A conditional update (AIP-154) refused because someone changed the application
# in between is read and made again; this many times before giving up.
UPDATE_ATTEMPTS = 5


def _change_application(s: Any, app_id: str, change: Callable[[Any], list[str]]) -> Any:
    """Read the application, let ``change`` edit it (returning the paths it
    changed), and write it back only if it is still as read: the update carries
    the etag it was read with, so a credential another admin added meanwhile is
    not undone by writing back the list as it was. Read again and redone when
    it changed in between."""
    from google.protobuf.field_mask_pb2 import FieldMask

    from m2mauth.v1 import application_service_pb2 as app_pb

    for attempt in range(UPDATE_ATTEMPTS):
        if attempt:
            # Another admin is editing it too: let their change land first.
            time.sleep(random.uniform(0.05, 0.2) * attempt)  # noqa: S311 - jitter, no secret
        app = s.call(s.apps.GetApplication, app_pb.GetApplicationRequest(id=app_id)).application
        paths = change(app)
        mask = FieldMask(paths=paths)
        request = app_pb.UpdateApplicationRequest(application=app, update_mask=mask)
        reply = s.call_unless_stale(s.apps.UpdateApplication, request)
        if reply is not None:
            return reply.application
    raise usage_failure(
        f"{app_id} changed each time it was read ({UPDATE_ATTEMPTS} attempts): "
        "someone else is editing it; try again"
    )


@apps_federation.command("add")
@click.argument("app_id", metavar="APP")
@_federation_options
@click.option(
    "--switch-method",
    is_flag=True,
    help="Make the application federated if it is not (its secrets or keys then stop "
    "authenticating it).",
)
@output_options(field=True)
@connection_options()
def apps_federation_add(
    app_id: str,
    issuer: str,
    subject: str,
    audience: str,
    switch_method: bool,
    out: Output,
    conn: Connection,
) -> None:
    """Trust one more workload identity.

    \b
    Examples:
      m2mauth apps federation add app_01J... --issuer https://oidc.eks.example.com \\
        --subject system:serviceaccount:billing:invoicer --audience m2mauth
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_one
    from m2mauth.v1 import resources_pb2 as res

    def add(app: Any) -> list[str]:
        paths = ["federated_credentials"]
        if app.token_endpoint_auth_method != res.TOKEN_ENDPOINT_AUTH_METHOD_FEDERATED:
            if not switch_method:
                raise usage_failure(
                    f"{app_id} is not federated: pass --switch-method to make it so "
                    "(its secrets or keys then stop authenticating it)"
                )
            app.token_endpoint_auth_method = res.TOKEN_ENDPOINT_AUTH_METHOD_FEDERATED
            app.jwks, app.jwks_uri = "", ""
            paths += ["token_endpoint_auth_method", "jwks", "jwks_uri"]
        app.federated_credentials.append(
            res.FederatedCredential(issuer=issuer, subject=subject, audience=audience)
        )
        return paths

    with open_session(conn) as s:
        show_one(out, _change_application(s, app_id, add))


@apps_federation.command("list")
@click.argument("app_id", metavar="APP")
@output_options()
@connection_options()
def apps_federation_list(app_id: str, out: Output, conn: Connection) -> None:
    """List the workload identities an application trusts.

    \b
    Example:
      m2mauth apps federation list app_01J... -o json
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_list
    from m2mauth.v1 import application_service_pb2 as app_pb

    with open_session(conn) as s:
        app = s.call(s.apps.GetApplication, app_pb.GetApplicationRequest(id=app_id)).application
    show_list(out, list(app.federated_credentials), FEDERATION_COLUMNS, "federated credentials")


@apps_federation.command("remove")
@click.argument("app_id", metavar="APP")
@_federation_options
@output_options(field=True)
@connection_options()
def apps_federation_remove(
    app_id: str, issuer: str, subject: str, audience: str, out: Output, conn: Connection
) -> None:
    """Stop trusting one workload identity (the last one cannot be removed: switch
    the application to another method with `apps update --auth-method` instead).

    \b
    Example:
      m2mauth apps federation remove app_01J... --issuer https://oidc.eks.example.com \\
        --subject system:serviceaccount:billing:invoicer --audience m2mauth
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_one
    from m2mauth.v1 import resources_pb2 as res

    unwanted = res.FederatedCredential(issuer=issuer, subject=subject, audience=audience)

    def remove(app: Any) -> list[str]:
        kept = [c for c in app.federated_credentials if c != unwanted]
        if len(kept) == len(app.federated_credentials):
            raise usage_failure(f"{app_id} has no such federated credential")
        del app.federated_credentials[:]
        app.federated_credentials.extend(kept)
        return ["federated_credentials"]

    with open_session(conn) as s:
        show_one(out, _change_application(s, app_id, remove))


@apps.command("revoke-tokens")
@click.argument("app_id", metavar="APP")
@output_options()
@connection_options()
def apps_revoke_tokens(app_id: str, out: Output, conn: Connection) -> None:
    """Revoke every token issued so far to an application (kill switch).

    Introspection reports them inactive at once; tokens issued afterwards
    work. To stop new tokens too, revoke its secrets or --disable it.

    \b
    Example:
      m2mauth apps revoke-tokens app_01J...
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.v1 import application_service_pb2 as app_pb

    with open_session(conn) as s:
        reply = s.call(
            s.apps.RevokeApplicationTokens, app_pb.RevokeApplicationTokensRequest(id=app_id)
        )
    _echo_done(
        out,
        f"revoked the tokens of application {app_id} issued until {_revoke_time_text(reply)}",
        reply,
    )


@apps.command("usage")
@click.argument("app_id", metavar="APP")
@click.option("--days", type=click.IntRange(1, 366), default=30, show_default=True)
@output_options()
@connection_options()
def apps_usage(app_id: str, days: int, out: Output, conn: Connection) -> None:
    """When the application last got a token, and how many it got each day.

    \b
    Example:
      m2mauth apps usage app_01J... --days 7
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import echo_json, render_table, to_dict
    from m2mauth.v1 import application_service_pb2 as app_pb

    request = app_pb.GetApplicationUsageRequest(id=app_id, days=days)
    with open_session(conn) as s:
        reply = s.call(s.apps.GetApplicationUsage, request)
    if out.format == "json":
        echo_json(to_dict(reply))
        return
    last = (
        reply.last_used_time.ToDatetime().isoformat() + "Z"
        if reply.HasField("last_used_time")
        else "never"
    )
    click.echo(f"last used: {last}")
    if reply.daily_tokens:
        click.echo(render_table([(d.date, str(d.tokens_issued)) for d in reply.daily_tokens]))


# --- client secrets --------------------------------------------------------


@main.group(cls=ClientGroup)
def secrets() -> None:
    """Manage the client secrets of an application.

    \b
    Example:
      m2mauth secrets create app_01J...
    """


@secrets.command("create")
@click.argument("app_id", metavar="APP")
@click.option(
    "--expires",
    type=TIME_AHEAD,
    metavar="WHEN",
    help="When it stops working: an ISO-8601 time, or a duration from now such as 90d "
    "(default: never).",
)
@output_options(quiet="Print only the secret.")
@connection_options()
def secrets_create(app_id: str, expires: datetime | None, out: Output, conn: Connection) -> None:
    """Create a client secret and print it: the only time it is ever shown.

    The warning goes to stderr, so `-q` or `-o json` output can be captured.

    \b
    Examples:
      m2mauth secrets create app_01J... --expires 90d
      SECRET=$(m2mauth secrets create app_01J... -q)
    """
    from google.protobuf.timestamp_pb2 import Timestamp

    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import echo_json, field_rows, render_table, to_dict
    from m2mauth.v1 import application_service_pb2 as app_pb

    request = app_pb.CreateClientSecretRequest(application_id=app_id)
    if expires is not None:
        request.expire_time.CopyFrom(Timestamp(seconds=int(expires.timestamp())))
    with open_session(conn) as s:
        reply = s.call(s.apps.CreateClientSecret, request)
    if out.quiet:
        click.echo(reply.secret)
    elif out.format == "json":
        echo_json(to_dict(reply))
    else:
        click.echo(render_table([*field_rows(reply.client_secret), ("secret", reply.secret)]))
    click.echo(
        "warning: this client secret is shown only now and cannot be read again: store it safely",
        err=True,
    )


@secrets.command("list")
@click.argument("app_id", metavar="APP")
@output_options()
@connection_options()
def secrets_list(app_id: str, out: Output, conn: Connection) -> None:
    """List an application's live secrets (their hints, never the secrets).

    \b
    Example:
      m2mauth secrets list app_01J...
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_list
    from m2mauth.v1 import application_service_pb2 as app_pb

    with open_session(conn) as s:
        reply = s.call(
            s.apps.ListClientSecrets, app_pb.ListClientSecretsRequest(application_id=app_id)
        )
    show_list(out, reply.client_secrets, SECRET_COLUMNS, "client secrets")


@secrets.command("revoke")
@click.argument("app_id", metavar="APP")
@click.argument("secret_id", metavar="SECRET")
@output_options()
@connection_options()
def secrets_revoke(app_id: str, secret_id: str, out: Output, conn: Connection) -> None:
    """Revoke a client secret at once.

    Tokens already issued with it stay valid; `m2mauth apps revoke-tokens`
    ends them too.

    \b
    Example:
      m2mauth secrets revoke app_01J... secret_01J...
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.v1 import application_service_pb2 as app_pb

    request = app_pb.RevokeClientSecretRequest(application_id=app_id, id=secret_id)
    with open_session(conn) as s:
        reply = s.call(s.apps.RevokeClientSecret, request)
    _echo_done(out, f"revoked client secret {secret_id} of application {app_id}", reply)


# --- signing keys ----------------------------------------------------------


@main.group(cls=ClientGroup)
def keys() -> None:
    """List and rotate the token signing keys.

    These commands need an environment admin key.

    \b
    Example:
      m2mauth keys rotate
    """


@keys.command("list")
@click.option("--show-retired", is_flag=True, help="Also list RETIRED keys.")
@limit_option
@output_options()
@connection_options()
def keys_list(show_retired: bool, limit: int | None, out: Output, conn: Connection) -> None:
    """List signing keys, newest first (NEXT, CURRENT, PREVIOUS).

    \b
    Example:
      m2mauth keys list --show-retired
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_list
    from m2mauth.v1 import key_service_pb2 as key_pb

    request = key_pb.ListSigningKeysRequest(show_retired=show_retired)
    with open_session(conn) as s:
        found = s.collect(s.keys.ListSigningKeys, request, "signing_keys", limit)
    show_list(out, found, KEY_COLUMNS, "signing keys")


@keys.command("rotate")
@click.option(
    "--algorithm",
    type=click.Choice(SIGNING_ALGORITHMS, case_sensitive=False),
    help="Algorithm of the new NEXT key (default: the server's --signing-algorithm).",
)
@click.option(
    "--now",
    is_flag=True,
    help="Promote the NEXT key at once, however recently it was published "
    "(an emergency, e.g. a leaked key).",
)
@output_options()
@connection_options()
def keys_rotate(algorithm: str | None, now: bool, out: Output, conn: Connection) -> None:
    """Rotate: NEXT starts signing, CURRENT becomes PREVIOUS, a new NEXT is published.

    Publish first, promote after: the NEXT key starts signing only once it has
    been published longer than verifiers may cache the JWKS
    (--jwks-max-age-seconds), so rotation needs no downtime. Asked earlier, the
    rotation is scheduled for that moment and the server carries it out; this
    says when. --now promotes at once and tells every replica at once. Prints
    every published key with its state afterwards: the PREVIOUS key still
    verifies the tokens it signed (-o json: the CURRENT and NEXT keys only).

    \b
    Examples:
      m2mauth keys rotate
      m2mauth keys rotate --now      # the CURRENT key leaked
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import echo_json, show_list, to_dict
    from m2mauth.v1 import key_service_pb2 as key_pb
    from m2mauth.v1 import resources_pb2 as res

    request = key_pb.RotateSigningKeyRequest(now=now)
    if algorithm:
        request.algorithm = res.SigningAlgorithm.Value(f"SIGNING_ALGORITHM_{algorithm.upper()}")
    with open_session(conn) as s:
        reply = s.call(s.keys.RotateSigningKey, request)
        if out.format == "json":
            echo_json(to_dict(reply))
            return
        if reply.next_key.HasField("activate_time"):
            at = reply.next_key.activate_time.ToDatetime(UTC).isoformat(timespec="seconds")
            click.echo(
                f"Rotation scheduled: {reply.next_key.id} becomes CURRENT at {at}, once "
                "every verifier's cached JWKS holds it; "
                f"{reply.current_key.id} signs until then. (--now rotates at once.)"
            )
        else:
            click.echo(f"Rotated: {reply.current_key.id} signs from now on.")
        # Every key still published, PREVIOUS included: the one that signed the
        # tokens issued before this rotation, which verifiers must keep accepting.
        published = s.collect(
            s.keys.ListSigningKeys, key_pb.ListSigningKeysRequest(), "signing_keys", None
        )
    show_list(out, published, KEY_COLUMNS, "signing keys")


# --- audit -----------------------------------------------------------------


@main.group(cls=ClientGroup)
def audit() -> None:
    """Read the audit log.

    \b
    Example:
      m2mauth audit list --since 1h
    """


@audit.command("list")
@click.option("--org", "org_id", metavar="ORG", help="Only events of this organization.")
@click.option("--app", "app_id", metavar="APP", help="Only events of this application.")
@click.option(
    "--since",
    type=TIME_AGO,
    metavar="WHEN",
    help="Only events at or after this: ISO-8601 (UTC unless an offset is given) or a "
    "duration ago such as 1h.",
)
@click.option(
    "--until", type=TIME_AGO, metavar="WHEN", help="Only events before this (same forms)."
)
@click.option("--action", metavar="ACTION", help="Only this action, e.g. token.issue_failed.")
@click.option(
    "--actor", metavar="ACTOR", help="Only events by this admin key id, client_id or fingerprint."
)
@limit_option
@output_options()
@connection_options()
def audit_list(
    org_id: str | None,
    app_id: str | None,
    since: datetime | None,
    until: datetime | None,
    action: str | None,
    actor: str | None,
    limit: int | None,
    out: Output,
    conn: Connection,
) -> None:
    """List audit events, newest first; the filters combine.

    \b
    Examples:
      m2mauth audit list --org org_01J... --since 2026-01-01T00:00:00Z --limit 50
      m2mauth audit list --app app_01J... --since 24h -o json
      m2mauth audit list --action token.issue_failed --since 1h
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_list
    from m2mauth.v1 import audit_service_pb2 as audit_pb

    request = audit_pb.ListAuditEventsRequest(
        organization_id=org_id or "",
        application_id=app_id or "",
        action=action or "",
        actor=actor or "",
    )
    if since is not None:
        request.start_time.FromDatetime(since)
    if until is not None:
        request.end_time.FromDatetime(until)
    with open_session(conn) as s:
        found = s.collect(s.audit.ListAuditEvents, request, "audit_events", limit)
    show_list(out, found, AUDIT_COLUMNS, "audit events")


# --- admin keys ------------------------------------------------------------


def _role_value(role: str) -> Any:
    from m2mauth.v1 import resources_pb2 as res

    return res.AdminKeyRole.Value("ADMIN_KEY_ROLE_" + role.upper().replace("-", "_"))


@main.group("admin-keys", cls=ClientGroup)
def admin_keys() -> None:
    """Manage admin keys through the server (the first key comes from `admin-key create`).

    A key can create keys no wider than itself: the same role or a narrower
    one, its own organization or (for an environment key) any.

    \b
    Examples:
      m2mauth admin-keys create --name billing-api --role token-verifier -q
      m2mauth admin-keys list --organization org_01J...
    """


@admin_keys.command("create")
@click.option("--name", required=True, help="What the key is for, e.g. the API that holds it.")
@click.option(
    "--organization",
    "organization_id",
    metavar="ORG",
    help="Scope the key to one organization (default: the caller's scope).",
)
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="admin",
    show_default=True,
    help="admin: manage; token-verifier: introspect and revoke tokens; auditor: read only.",
)
@click.option(
    "--expires-in",
    "expires",
    type=TIME_AHEAD,
    metavar="WHEN",
    help="When it stops working: a duration such as 90d, or an ISO-8601 time (default: never).",
)
@output_options(quiet="Print only the key.")
@connection_options()
def admin_keys_create(
    name: str,
    organization_id: str | None,
    role: str,
    expires: datetime | None,
    out: Output,
    conn: Connection,
) -> None:
    """Create an admin key and print it: the only time it is ever shown.

    \b
    Examples:
      m2mauth admin-keys create --name billing-api --role token-verifier --expires-in 90d -q
      m2mauth admin-keys create --name acme-ops --organization org_01J...
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import echo_json, field_rows, render_table, to_dict
    from m2mauth.v1 import admin_key_service_pb2 as ak_pb
    from m2mauth.v1 import resources_pb2 as res

    wanted = res.AdminKey(name=name, organization_id=organization_id or "", role=_role_value(role))
    if expires is not None:
        wanted.expire_time.FromDatetime(expires)
    with open_session(conn) as s:
        reply = s.call(s.admin_keys.CreateAdminKey, ak_pb.CreateAdminKeyRequest(admin_key=wanted))
    if out.quiet:
        click.echo(reply.key)
    elif out.format == "json":
        echo_json(to_dict(reply))
    else:
        click.echo(render_table([*field_rows(reply.admin_key), ("key", reply.key)]))
    click.echo(
        "warning: this admin key is shown only now and cannot be read again: store it safely",
        err=True,
    )


@admin_keys.command("list")
@click.option("--organization", "organization_id", metavar="ORG", help="Only this org's keys.")
@click.option("--show-revoked", is_flag=True, help="Also list revoked keys.")
@limit_option
@output_options()
@connection_options()
def admin_keys_list(
    organization_id: str | None,
    show_revoked: bool,
    limit: int | None,
    out: Output,
    conn: Connection,
) -> None:
    """List admin keys, oldest first (their hints, never the keys).

    \b
    Example:
      m2mauth admin-keys list --organization org_01J... --show-revoked
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_list
    from m2mauth.v1 import admin_key_service_pb2 as ak_pb

    request = ak_pb.ListAdminKeysRequest(
        organization_id=organization_id or "", show_revoked=show_revoked
    )
    with open_session(conn) as s:
        found = s.collect(s.admin_keys.ListAdminKeys, request, "admin_keys", limit)
    show_list(out, found, ADMIN_KEY_COLUMNS, "admin keys")


@admin_keys.command("get")
@click.argument("key_id", metavar="ID")
@output_options()
@connection_options()
def admin_keys_get(key_id: str, out: Output, conn: Connection) -> None:
    """Show one admin key.

    \b
    Example:
      m2mauth admin-keys get ak_01J...
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import show_one
    from m2mauth.v1 import admin_key_service_pb2 as ak_pb

    with open_session(conn) as s:
        reply = s.call(s.admin_keys.GetAdminKey, ak_pb.GetAdminKeyRequest(id=key_id))
    show_one(out, reply.admin_key)


@admin_keys.command("revoke")
@click.argument("key_id", metavar="ID")
@output_options()
@connection_options()
def admin_keys_revoke(key_id: str, out: Output, conn: Connection) -> None:
    """Revoke an admin key: it fails on its next call, in every process.

    \b
    Example:
      m2mauth admin-keys revoke ak_01J...
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.v1 import admin_key_service_pb2 as ak_pb

    with open_session(conn) as s:
        reply = s.call(s.admin_keys.RevokeAdminKey, ak_pb.RevokeAdminKeyRequest(id=key_id))
    _echo_done(out, f"revoked admin key {key_id}", reply)


# --- tokens ----------------------------------------------------------------


def _token_argument(value: str) -> str:
    """TOKEN, or the first line of stdin for "-" (keeps the token out of `ps`)."""
    if value != "-":
        return value
    text = sys.stdin.readline().strip()
    if not text:
        raise usage_failure("no token on stdin: pipe one in, or pass it as TOKEN")
    return text


@main.command(cls=ClientCommand)
@client_credential_options(required=True, keys=True)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    metavar="SCOPE",
    help="A scope to ask for; repeat for several (default: all the application's scopes).",
)
@click.option(
    "--audience",
    metavar="AUDIENCE",
    help="The audience to ask for (default: the server's default audience).",
)
@output_options()
@connection_options(admin_key=False)
def token(
    client: ClientCredentials | KeyCredentials,
    scopes: tuple[str, ...],
    audience: str | None,
    out: Output,
    conn: Connection,
) -> None:
    """Get an access token (client_credentials grant) and print it.

    -o json prints the whole response (token_type, expires_in, scope).

    With --private-key the application proves itself with a client assertion
    signed by that key (private_key_jwt, RFC 7523): no secret at all.

    \b
    Examples:
      export M2MAUTH_CLIENT_ID=client_01J... M2MAUTH_CLIENT_SECRET=m2m_cs_...
      TOKEN=$(m2mauth token --scope invoices:read)
      m2mauth token --client-id client_01J... --private-key key.pem --kid k1 \\
        --assertion-audience https://auth.example.com
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import echo_json, to_dict
    from m2mauth.v1 import token_service_pb2 as token_pb

    request = token_pb.IssueTokenRequest(
        grant_type="client_credentials",
        client_id=client.client_id,
        scope=" ".join(scopes),
        audience=audience or "",
    )
    if isinstance(client, KeyCredentials):
        from m2mauth.cli_support.assertion import mint_assertion
        from m2mauth.core.private_key_jwt import JWT_BEARER_ASSERTION_TYPE

        request.client_assertion_type = JWT_BEARER_ASSERTION_TYPE
        request.client_assertion = mint_assertion(
            client.private_key, client.client_id, client.audience, client.kid
        )
    else:
        request.client_secret = client.client_secret
    with open_session(conn, admin=False) as s:
        reply = s.call(s.tokens.IssueToken, request)
    if out.format == "json":
        echo_json(to_dict(reply))
    else:
        click.echo(reply.access_token)


@main.command(cls=ClientCommand)
@click.argument("token_text", metavar="TOKEN")
@client_credential_options(required=False)
@output_options(field=True)
@connection_options()
def introspect(
    token_text: str, client: ClientCredentials | None, out: Output, conn: Connection
) -> None:
    """Check a token: active or not, and its claims (RFC 7662).

    Given client credentials (--client-id/--client-secret or their
    variables), it asks as that application, which sees only its own tokens
    as active; otherwise with the admin key. TOKEN "-" reads it from stdin.

    \b
    Examples:
      m2mauth introspect "$TOKEN"
      m2mauth introspect - -o json <token.txt
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.cli_support.output import echo_json, render_table, show_one
    from m2mauth.v1 import token_service_pb2 as token_pb

    request = token_pb.IntrospectRequest(token=_token_argument(token_text))
    if client is not None:
        request.client_id, request.client_secret = client.client_id, client.client_secret
    with open_session(conn, admin=client is None) as s:
        reply = s.call(s.tokens.Introspect, request)
    if reply.active or out.field:
        show_one(out, reply)
    elif out.format == "json":
        # RFC 7662 section 2.2: an inactive token is only {"active": false}. (The proto
        # JSON mapping would drop a false bool and print {}.)
        echo_json({"active": False})
    else:
        click.echo(render_table([("active", "false")]))


@main.command(cls=ClientCommand)
@click.argument("token_text", metavar="TOKEN")
@client_credential_options(required=False)
@output_options()
@connection_options()
def revoke(
    token_text: str, client: ClientCredentials | None, out: Output, conn: Connection
) -> None:
    """Revoke a token (RFC 7009).

    From then on it introspects as inactive.

    Given client credentials (--client-id/--client-secret or their
    variables), it acts as that application, which may revoke only its own
    tokens; otherwise with the admin key. Revoking an unknown or expired
    token succeeds. TOKEN "-" reads it from stdin.

    \b
    Example:
      m2mauth revoke "$TOKEN"
    """
    from m2mauth.cli_support.channel import open_session
    from m2mauth.v1 import token_service_pb2 as token_pb

    request = token_pb.RevokeTokenRequest(token=_token_argument(token_text))
    if client is not None:
        request.client_id, request.client_secret = client.client_id, client.client_secret
    with open_session(conn, admin=client is None) as s:
        reply = s.call(s.tokens.RevokeToken, request)
    _echo_done(out, "token revoked", reply)


if __name__ == "__main__":  # pragma: no cover
    main()
