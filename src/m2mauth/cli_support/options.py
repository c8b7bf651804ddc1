"""The options the client commands share, and the parameter types they parse.

Each decorator adds its click options and hands the command one small value
object instead of a handful of loose keyword arguments. Only click and the
standard library are imported here: ``m2mauth --help`` must not load grpc.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import click

from m2mauth.cli_support.failure import usage_failure

Command = Callable[..., Any]
DEFAULT_SERVER = "127.0.0.1:50051"
DEFAULT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Connection:
    """Where the server is, how to reach it, and the admin key to send (if any)."""

    server: str
    tls: bool
    ca_file: Path | None
    tls_server_name: str | None
    timeout: float
    admin_key: str | None = None
    # A certificate and key for a server that asks for one (mutual TLS: serve with
    # --tls-client-ca).
    tls_client_cert: Path | None = None
    tls_client_key: Path | None = None

    @property
    def uses_tls(self) -> bool:
        return (
            self.tls
            or self.ca_file is not None
            or self.tls_server_name is not None
            or self.tls_client_cert is not None
        )


@dataclass(frozen=True)
class ClientCredentials:
    """An application's client_id and client secret (RFC 6749 section 2.3.1)."""

    client_id: str
    client_secret: str


@dataclass(frozen=True)
class KeyCredentials:
    """An application's client_id and the private key it signs client assertions
    with (private_key_jwt, RFC 7523 section 2.2)."""

    client_id: str
    private_key: Path
    kid: str | None
    # The assertion's aud: the server's issuer URL (or its token endpoint URL).
    audience: str


@dataclass(frozen=True)
class Output:
    """How to print the result: a table for people, JSON for scripts, or one value."""

    format: Literal["table", "json"]
    field: str | None = None
    quiet: bool = False


def _apply(func: Command, options: list[Callable[[Command], Command]]) -> Command:
    for option in reversed(options):
        func = option(func)
    return func


def _not_empty(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter("must not be empty; use HOST:PORT, e.g. 127.0.0.1:50051")
    return value


def connection_options(*, admin_key: bool = True) -> Callable[[Command], Command]:
    """--server, TLS, --timeout and (unless admin_key=False) --admin-key -> ``conn``."""

    options: list[Callable[[Command], Command]] = [
        click.option(
            "--server",
            default=DEFAULT_SERVER,
            show_default=True,
            envvar="M2MAUTH_SERVER",
            show_envvar=True,
            metavar="HOST:PORT",
            callback=_not_empty,
            help="The m2mauth gRPC server.",
        ),
    ]
    if admin_key:
        options.append(
            click.option(
                "--admin-key",
                envvar="M2MAUTH_ADMIN_KEY",
                show_envvar=True,
                metavar="KEY",
                help="Admin key, sent as `authorization: Bearer KEY` (prefer the variable: "
                "arguments show up in `ps`).",
            )
        )
    options += [
        click.option(
            "--tls",
            is_flag=True,
            envvar="M2MAUTH_TLS",
            show_envvar=True,
            help="Use TLS, trusting the system's root certificates.",
        ),
        click.option(
            "--ca-file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            envvar="M2MAUTH_CA_FILE",
            show_envvar=True,
            help="Use TLS, trusting the CA certificates in this PEM file.",
        ),
        click.option(
            "--tls-server-name",
            envvar="M2MAUTH_TLS_SERVER_NAME",
            show_envvar=True,
            metavar="NAME",
            help="Use TLS and expect this name in the server's certificate.",
        ),
        click.option(
            "--tls-client-cert",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            envvar="M2MAUTH_TLS_CLIENT_CERT",
            show_envvar=True,
            help="Use mutual TLS, presenting this PEM certificate chain (with "
            "--tls-client-key): for a server started with --tls-client-ca.",
        ),
        click.option(
            "--tls-client-key",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            envvar="M2MAUTH_TLS_CLIENT_KEY",
            show_envvar=True,
            help="The PEM private key of --tls-client-cert.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=DEFAULT_TIMEOUT_SECONDS,
            show_default=True,
            envvar="M2MAUTH_TIMEOUT",
            show_envvar=True,
            metavar="SECONDS",
            help="Give up on each call after this long.",
        ),
    ]

    def decorate(func: Command) -> Command:
        @functools.wraps(func)
        def wrapper(
            *args: Any,
            server: str,
            tls: bool,
            ca_file: Path | None,
            tls_server_name: str | None,
            tls_client_cert: Path | None,
            tls_client_key: Path | None,
            timeout: float,
            **kwargs: Any,
        ) -> Any:
            if (tls_client_cert is None) != (tls_client_key is None):
                raise usage_failure("--tls-client-cert and --tls-client-key go together: set both")
            conn = Connection(
                server=server,
                tls=tls,
                ca_file=ca_file,
                tls_server_name=tls_server_name,
                timeout=timeout,
                admin_key=kwargs.pop("admin_key", None) or None,
                tls_client_cert=tls_client_cert,
                tls_client_key=tls_client_key,
            )
            return func(*args, conn=conn, **kwargs)

        return _apply(wrapper, options)

    return decorate


def client_credential_options(
    *, required: bool, keys: bool = False
) -> Callable[[Command], Command]:
    """--client-id/--client-secret (or their variables) -> ``client``.

    With required=False, ``client`` is None when neither is given. With
    ``keys``, --private-key (with --kid and --assertion-audience) may stand
    for the secret: ``client`` is then a :class:`KeyCredentials`.
    """

    options: list[Callable[[Command], Command]] = [
        click.option(
            "--client-id",
            envvar="M2MAUTH_CLIENT_ID",
            show_envvar=True,
            metavar="ID",
            help="The application's client_id (client_...).",
        ),
        click.option(
            "--client-secret",
            envvar="M2MAUTH_CLIENT_SECRET",
            show_envvar=True,
            metavar="SECRET",
            help="One of the application's client secrets (prefer the variable: "
            "arguments show up in `ps`).",
        ),
    ]
    if keys:
        options += _key_options

    def decorate(func: Command) -> Command:
        @functools.wraps(func)
        def wrapper(
            *args: Any, client_id: str | None, client_secret: str | None, **kwargs: Any
        ) -> Any:
            client: ClientCredentials | KeyCredentials | None = None
            if keys and kwargs.get("private_key") is not None:
                client = _key_credentials(client_id, client_secret, kwargs)
            elif client_id or client_secret:
                if not (client_id and client_secret):
                    missing = "M2MAUTH_CLIENT_SECRET" if client_id else "M2MAUTH_CLIENT_ID"
                    flag = "--client-secret" if client_id else "--client-id"
                    raise usage_failure(
                        f"incomplete client credentials: set {missing} or pass {flag}"
                    )
                client = ClientCredentials(client_id, client_secret)
            elif required:
                raise usage_failure(
                    "no client credentials: set M2MAUTH_CLIENT_ID and M2MAUTH_CLIENT_SECRET "
                    "or pass --client-id and --client-secret"
                )
            for name in ("private_key", "kid", "assertion_audience"):
                kwargs.pop(name, None)
            return func(*args, client=client, **kwargs)

        return _apply(wrapper, options)

    return decorate


_key_options: list[Callable[[Command], Command]] = [
    click.option(
        "--private-key",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        envvar="M2MAUTH_PRIVATE_KEY",
        show_envvar=True,
        metavar="FILE",
        help="Authenticate with a client assertion signed by this PEM private key "
        "(private_key_jwt) instead of a secret: RSA (RS256), EC P-256 (ES256) or Ed25519.",
    ),
    click.option(
        "--kid",
        envvar="M2MAUTH_KID",
        show_envvar=True,
        metavar="KID",
        help="With --private-key: the kid of its public key in the application's JWK Set.",
    ),
    click.option(
        "--assertion-audience",
        envvar="M2MAUTH_ASSERTION_AUDIENCE",
        show_envvar=True,
        metavar="URL",
        help="With --private-key: the server's issuer URL, the assertion's aud.",
    ),
]


def _key_credentials(
    client_id: str | None, client_secret: str | None, kwargs: dict[str, Any]
) -> KeyCredentials:
    if client_secret:
        raise usage_failure("use --private-key or a client secret, not both")
    if not client_id:
        raise usage_failure(
            "--private-key needs the client_id: set M2MAUTH_CLIENT_ID or pass --client-id"
        )
    audience = kwargs.get("assertion_audience")
    if not audience:
        raise usage_failure(
            "--private-key needs --assertion-audience (or M2MAUTH_ASSERTION_AUDIENCE): "
            "the server's issuer URL"
        )
    return KeyCredentials(client_id, kwargs["private_key"], kwargs.get("kid"), audience)


def output_options(
    *, field: bool = False, quiet: str | None = None
) -> Callable[[Command], Command]:
    """-o/--output, plus --field for single results and -q/--quiet on create -> ``out``.

    ``quiet`` is the help text of -q (what it prints), or None for no -q.
    """

    options: list[Callable[[Command], Command]] = [
        click.option(
            "-o",
            "--output",
            "output_format",
            type=click.Choice(["table", "json"]),
            default="table",
            show_default=True,
            envvar="M2MAUTH_OUTPUT",
            show_envvar=True,
            help="table for people; json for scripts (the proto's JSON mapping, "
            "proto field names).",
        )
    ]
    if field:
        options.append(
            click.option(
                "--field",
                metavar="NAME",
                help="Print only this field's value, e.g. --field client_id (for scripts).",
            )
        )
    if quiet is not None:
        options.append(click.option("-q", "--quiet", is_flag=True, help=quiet))

    def decorate(func: Command) -> Command:
        @functools.wraps(func)
        def wrapper(*args: Any, output_format: Literal["table", "json"], **kwargs: Any) -> Any:
            out = Output(
                format=output_format,
                field=kwargs.pop("field", None),
                quiet=kwargs.pop("quiet", False),
            )
            return func(*args, out=out, **kwargs)

        return _apply(wrapper, options)

    return decorate


def limit_option(func: Command) -> Command:
    return click.option(
        "--limit",
        type=click.IntRange(min=1),
        metavar="N",
        help="Print at most N items (default: page through all of them).",
    )(func)


_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int | None:
    """Seconds in "90", "90s", "15m", "12h" or "30d"; None if it is not one."""
    match = _DURATION.match(text.strip())
    if not match:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class DurationType(click.ParamType[int]):
    """Seconds, with an optional unit: 900, 900s, 15m, 1h, 1d."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        seconds = parse_duration(str(value))
        if seconds is None:
            self.fail(f"{value!r} is not a duration: use seconds, or 15m, 1h, 1d", param, ctx)
        return seconds


class TimeType(click.ParamType[datetime]):
    """An ISO-8601 time (UTC unless it has an offset), or a duration relative to now.

    ``direction`` -1 reads "1h" as an hour ago (for --since), +1 as an hour
    from now (for --expires).
    """

    name = "time"

    def __init__(self, direction: Literal[-1, 1]) -> None:
        self.direction = direction

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        seconds = parse_duration(text)
        if seconds is not None:
            return datetime.now(UTC) + self.direction * timedelta(seconds=seconds)
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            example = "1h" if self.direction < 0 else "90d"
            self.fail(
                f"{value!r} is not a time: use ISO-8601 like 2026-01-31T12:00:00Z, "
                f"or a duration like {example}",
                param,
                ctx,
            )
        return when if when.tzinfo else when.replace(tzinfo=UTC)


DURATION = DurationType()
TIME_AGO = TimeType(-1)
TIME_AHEAD = TimeType(1)
