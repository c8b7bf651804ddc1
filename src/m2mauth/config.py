"""Every setting of the server, in one place.

Each setting is a command-line flag of ``m2mauth serve`` and an ``M2MAUTH_*``
environment variable (the flag wins). :data:`SETTINGS` is the single source:
the CLI builds its options from it and the README table is checked against it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEV_DATA_DIR = Path("var")


@dataclass(frozen=True, slots=True)
class Setting:
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


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database_url",
        str,
        "",
        "SQLAlchemy URL of the store: sqlite:///path/to.db or postgresql://user@host/db. "
        "Default with --dev: sqlite under ./var.",
    ),
    Setting("grpc_host", str, "127.0.0.1", "Address the gRPC server binds."),
    Setting("grpc_port", int, 50051, "gRPC port; 0 picks a free one."),
    Setting("http_host", str, "127.0.0.1", "Address the OAuth HTTP endpoints bind."),
    Setting("http_port", int, 8080, "OAuth HTTP port; 0 picks a free one."),
    Setting(
        "issuer",
        str,
        "",
        "Issuer URL, the `iss` claim (RFC 9068 section 2.2). Default: http://<http host:port>.",
    ),
    Setting(
        "audience",
        str,
        "",
        "Default `aud` of tokens when the client asks for none. Default: the issuer.",
    ),
    Setting(
        "root_key",
        str,
        "",
        "Base64 32-byte root key from which the key-encryption, credential-hash and "
        "page-token keys are derived. Required unless --dev or --root-key-file.",
    ),
    Setting(
        "root_key_file",
        str,
        "",
        "File holding the root key. With --dev, created as var/root.key (mode 0600) if absent.",
    ),
    Setting(
        "signing_algorithm",
        str,
        "RS256",
        "Algorithm of new signing keys: RS256 (default; every JWT library has it), ES256 or EdDSA.",
    ),
    Setting("token_ttl_seconds", int, 3600, "Default access-token lifetime (seconds)."),
    Setting(
        "max_token_ttl_seconds",
        int,
        86400,
        "Upper bound for an application's token TTL override (seconds).",
    ),
    Setting(
        "key_rotation_interval_seconds",
        int,
        30 * 86400,
        "Rotate the signing key automatically this often; 0 disables automatic rotation.",
    ),
    Setting(
        "jwks_max_age_seconds",
        int,
        900,
        "How long verifiers may cache the JWKS (Cache-Control max-age). The next key is "
        "published at least this long before it signs.",
    ),
    Setting(
        "clock_leeway_seconds",
        int,
        60,
        "Leeway for clock skew: previous keys stay published this long after their last "
        "token expires.",
    ),
    Setting("max_client_secrets", int, 5, "Live client secrets allowed per application."),
    Setting(
        "grace_period_seconds",
        float,
        10.0,
        "On SIGTERM, how long in-flight calls may finish before the server stops.",
    ),
    Setting("workers", int, 8, "Threads serving gRPC calls, per process."),
    Setting(
        "processes",
        int,
        1,
        "Server processes sharing the gRPC and HTTP ports (SO_REUSEPORT); "
        "set it to the number of cores to use them all.",
    ),
    Setting("log_level", str, "INFO", "Log level: DEBUG, INFO, WARNING or ERROR."),
    Setting("log_format", str, "json", "Log format: json (structured) or text."),
)


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = ""
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    issuer: str = ""
    audience: str = ""
    root_key: str = ""
    root_key_file: str = ""
    signing_algorithm: str = "RS256"
    token_ttl_seconds: int = 3600
    max_token_ttl_seconds: int = 86400
    key_rotation_interval_seconds: int = 30 * 86400
    jwks_max_age_seconds: int = 900
    clock_leeway_seconds: int = 60
    max_client_secrets: int = 5
    grace_period_seconds: float = 10.0
    workers: int = 8
    processes: int = 1
    log_level: str = "INFO"
    log_format: str = "json"
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

    def problems(self) -> list[str]:
        """What is wrong with these settings, as sentences an operator can act on."""
        out: list[str] = []
        if not self.database_url:
            out.append("no database: set --database-url / M2MAUTH_DATABASE_URL (or use --dev)")
        if not self.root_key and not self.root_key_file:
            out.append(
                "no root key: set M2MAUTH_ROOT_KEY or --root-key-file (or use --dev); "
                "every replica needs the same one"
            )
        if self.signing_algorithm not in ("RS256", "ES256", "EdDSA"):
            out.append("--signing-algorithm must be RS256, ES256 or EdDSA")
        if not 60 <= self.token_ttl_seconds <= self.max_token_ttl_seconds:
            out.append("--token-ttl-seconds must be between 60 and --max-token-ttl-seconds")
        if self.jwks_max_age_seconds < 0 or self.clock_leeway_seconds < 0:
            out.append("--jwks-max-age-seconds and --clock-leeway-seconds must not be negative")
        if (
            self.key_rotation_interval_seconds
            and self.key_rotation_interval_seconds <= self.jwks_max_age_seconds
        ):
            out.append("--key-rotation-interval-seconds must exceed --jwks-max-age-seconds")
        if not 1 <= self.processes <= 256:
            out.append("--processes must be between 1 and 256")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            out.append("--log-level must be DEBUG, INFO, WARNING or ERROR")
        if self.log_format not in ("json", "text"):
            out.append("--log-format must be json or text")
        return out


assert {s.name for s in SETTINGS} == {
    f.name for f in dataclasses.fields(Settings) if f.name not in ("dev", "data_dir")
}, "SETTINGS and Settings must list the same settings"
