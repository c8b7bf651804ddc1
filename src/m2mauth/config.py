"""Every setting of the server, in one place.

Each setting is a command-line flag of ``m2mauth serve`` and an ``M2MAUTH_*``
environment variable (the flag wins). The :class:`Settings` dataclass is the
one declaration: name, type, default and help of each; :data:`SETTINGS` is
derived from it, the CLI builds its options from that, and the README table
is checked against it.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m2mauth.client_address import parse_networks
from m2mauth.core import defaults
from m2mauth.core.algorithms import DEFAULT_SIGNING_ALGORITHM, SIGNING_ALGORITHMS
from m2mauth.database_urls import (
    MEMORY_SCHEME,
    STORE_TIMEOUT_SECONDS,
    UnsupportedDatabaseUrl,
    scheme_of,
)
from m2mauth.ratelimit import REDIS_SCHEMES, UnsupportedRateLimitUrl

DEV_DATA_DIR = Path("var")


_HELP = "help"


def setting(default: Any, help_text: str) -> Any:
    """A field of :class:`Settings` that is also a flag and an environment variable."""
    return dataclasses.field(default=default, metadata={_HELP: help_text})


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = setting(
        "",
        "SQLAlchemy URL of the store: sqlite:///path/to.db or "
        "postgresql://user@host/db. Default with --dev: sqlite under ./var.",
    )
    store_timeout_seconds: float = setting(
        STORE_TIMEOUT_SECONDS,
        "Longest wait on the database (for a pooled connection, a lock, an answer) before "
        "the call fails with UNAVAILABLE / 503; health and /readyz report the store down "
        "when a probe takes longer. Opening a new PostgreSQL connection may take 2 s "
        "whatever this is (libpq's minimum).",
    )
    grpc_host: str = setting("127.0.0.1", "Address the gRPC server binds.")
    grpc_port: int = setting(50051, "gRPC port; 0 picks a free one.")
    http_host: str = setting("127.0.0.1", "Address the OAuth HTTP endpoints bind.")
    http_port: int = setting(8080, "OAuth HTTP port; 0 picks a free one.")
    issuer: str = setting(
        "", "Issuer URL, the `iss` claim (RFC 9068 section 2.2). Default: http://<http host:port>."
    )
    audience: str = setting(
        "", "Default `aud` of tokens when the client asks for none. Default: the issuer."
    )
    root_key: str = setting(
        "",
        "Base64 32-byte root key from which the key-encryption, credential-hash and "
        "page-token keys are derived. Required unless --dev or --root-key-file.",
    )
    root_key_file: str = setting(
        "", "File holding the root key. With --dev, created as var/root.key (mode 0600) if absent."
    )
    signing_algorithm: str = setting(
        DEFAULT_SIGNING_ALGORITHM,
        f"Algorithm of new signing keys: one of {', '.join(SIGNING_ALGORITHMS)} "
        f"(default {DEFAULT_SIGNING_ALGORITHM}: every JWT library has it).",
    )
    token_ttl_seconds: int = setting(
        defaults.TOKEN_TTL_SECONDS, "Default access-token lifetime (seconds)."
    )
    max_token_ttl_seconds: int = setting(
        defaults.MAX_TOKEN_TTL_SECONDS,
        "Upper bound for an application's token TTL override (seconds).",
    )
    key_rotation_interval_seconds: int = setting(
        defaults.KEY_ROTATION_INTERVAL_SECONDS,
        "Rotate the signing key automatically this often; 0 disables automatic rotation.",
    )
    jwks_max_age_seconds: int = setting(
        defaults.JWKS_MAX_AGE_SECONDS,
        "How long verifiers may cache the JWKS (Cache-Control max-age). The next key is "
        "published at least this long before it signs.",
    )
    clock_leeway_seconds: int = setting(
        defaults.CLOCK_LEEWAY_SECONDS,
        "Leeway for clock skew: previous keys stay published this long after their last "
        "token expires.",
    )
    audit_retention_days: int = setting(
        defaults.AUDIT_RETENTION_DAYS,
        "Audit events older than this many days are deleted, a few hundred at a time "
        "in the background; 0 keeps them for ever.",
    )
    max_client_secrets: int = setting(
        defaults.MAX_CLIENT_SECRETS, "Live client secrets allowed per application."
    )
    auth_failures_per_client_per_minute: int = setting(
        10,
        "Failed authentications one client may have from one address per minute before "
        "the token, introspection and revocation endpoints answer 429 / "
        "RESOURCE_EXHAUSTED (a token bucket: it refills evenly); 0 turns it off.",
    )
    auth_failures_per_source_per_minute: int = setting(
        60,
        "Failed client authentications one address may have per minute, whatever the "
        "client, before it is refused the same way; 0 turns it off.",
    )
    rate_limit_url: str = setting(
        "",
        "Where throttling and quota counters live: empty for this process only, "
        "redis://host:6379/0 to share them with every process and replica. If Redis is "
        "unreachable, limits are off (logged, and counted in /metrics) until it is back.",
    )
    rate_limit_prefix: str = setting(
        "m2mauth:", "Prefix of every Redis key m2mauth writes (for a shared Redis)."
    )
    trusted_proxies: str = setting(
        "",
        "Comma-separated addresses or networks (CIDR) of proxies in front of the HTTP "
        "endpoints: only behind them is the client's address read from X-Forwarded-For "
        "(for throttling and the audit log). Default: none, the socket's address.",
    )
    grace_period_seconds: float = setting(
        10.0, "On SIGTERM, how long in-flight calls may finish before the server stops."
    )
    workers: int = setting(8, "Threads serving gRPC calls, per process.")
    processes: int = setting(
        1,
        "Server processes sharing the gRPC and HTTP ports (SO_REUSEPORT); set it to the "
        "number of cores to use them all.",
    )
    log_level: str = setting("INFO", "Log level: DEBUG, INFO, WARNING or ERROR.")
    log_format: str = setting("json", "Log format: json (structured) or text.")
    # --dev: the embedded default (SQLite and a root key file under ./var).
    dev: bool = False
    data_dir: Path = DEV_DATA_DIR

    def with_defaults(self) -> Settings:
        """Fill the settings whose default depends on others."""
        changes: dict[str, Any] = {}
        if not self.database_url and self.dev:
            changes["database_url"] = f"sqlite:///{self.data_dir / 'm2mauth.db'}"
        if not self.root_key_file and not self.root_key and self.dev:
            changes["root_key_file"] = str(self.data_dir / "root.key")
        # With --http-port 0 the port is known only once bound; serve fills it then.
        if self.issuer or self.http_port:
            issuer = self.issuer or f"http://{self.http_host}:{self.http_port}"
            changes["issuer"] = issuer
            changes["audience"] = self.audience or issuer
        return dataclasses.replace(self, **changes)

    def _database_problems(self) -> list[str]:
        if not self.database_url:
            return ["no database: set --database-url / M2MAUTH_DATABASE_URL (or use --dev)"]
        if not scheme_of(self.database_url):
            return [f"--database-url: {UnsupportedDatabaseUrl(self.database_url)}"]
        out: list[str] = []
        if scheme_of(self.database_url) == MEMORY_SCHEME:
            # Nothing would create the first admin key without --dev, nor outlive the process.
            if not self.dev:
                out.append("--database-url memory:// is for trying m2mauth out: add --dev")
            if self.processes > 1:
                out.append(
                    "--database-url memory:// keeps its data in one process: use --processes 1"
                )
        return out

    def _edge_problems(self) -> list[str]:
        out: list[str] = []
        if self.rate_limit_url and not self.rate_limit_url.startswith(REDIS_SCHEMES):
            out.append(f"--rate-limit-url: {UnsupportedRateLimitUrl(self.rate_limit_url)}")
        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            out.append(f"--trusted-proxies: {exc}")
        if (
            self.auth_failures_per_client_per_minute < 0
            or self.auth_failures_per_source_per_minute < 0
        ):
            out.append("--auth-failures-per-*-per-minute must not be negative (0 turns it off)")
        return out

    def problems(self) -> list[str]:
        """What is wrong with these settings, as sentences an operator can act on."""
        out = self._database_problems() + self._edge_problems()
        if not self.root_key and not self.root_key_file:
            out.append(
                "no root key: set M2MAUTH_ROOT_KEY or --root-key-file (or use --dev); "
                "every replica needs the same one"
            )
        if self.signing_algorithm not in SIGNING_ALGORITHMS:
            out.append(f"--signing-algorithm must be one of {', '.join(SIGNING_ALGORITHMS)}")
        if not 60 <= self.token_ttl_seconds <= self.max_token_ttl_seconds:
            out.append("--token-ttl-seconds must be between 60 and --max-token-ttl-seconds")
        if self.jwks_max_age_seconds < 0 or self.clock_leeway_seconds < 0:
            out.append("--jwks-max-age-seconds and --clock-leeway-seconds must not be negative")
        if (
            self.key_rotation_interval_seconds
            and self.key_rotation_interval_seconds <= self.jwks_max_age_seconds
        ):
            out.append("--key-rotation-interval-seconds must exceed --jwks-max-age-seconds")
        if not 0 <= self.audit_retention_days <= 36500:
            out.append("--audit-retention-days must be between 0 (keep for ever) and 36500")
        if not 0.1 <= self.store_timeout_seconds <= 600:
            out.append("--store-timeout-seconds must be between 0.1 and 600")
        if not 1 <= self.processes <= 256:
            out.append("--processes must be between 1 and 256")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            out.append("--log-level must be DEBUG, INFO, WARNING or ERROR")
        if self.log_format not in ("json", "text"):
            out.append("--log-format must be json or text")
        return out


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting as the CLI and the README show it."""

    name: str  # the Settings attribute; flag is --name-with-dashes
    type: type
    default: Any
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def envvar(self) -> str:
        return "M2MAUTH_" + self.name.upper()


def _declared() -> tuple[Setting, ...]:
    types = typing.get_type_hints(Settings)
    return tuple(
        Setting(f.name, types[f.name], f.default, f.metadata[_HELP])
        for f in dataclasses.fields(Settings)
        if _HELP in f.metadata
    )


SETTINGS: tuple[Setting, ...] = _declared()
