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
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m2mauth.client_address import parse_networks
from m2mauth.core import defaults
from m2mauth.core.algorithms import DEFAULT_SIGNING_ALGORITHM, SIGNING_ALGORITHMS
from m2mauth.core.hosts import is_loopback_host
from m2mauth.cpu_affinity import MODES as CPU_AFFINITY_MODES
from m2mauth.database_urls import (
    MEMORY_SCHEME,
    STORE_TIMEOUT_SECONDS,
    UnsupportedDatabaseUrl,
    scheme_of,
)
from m2mauth.ratelimit import REDIS_SCHEMES, UnsupportedRateLimitUrl

DEV_DATA_DIR = Path("var")

# Limits of the transports, so that abuse costs the server a bounded amount.
# Read by grpc/server.py and http/server.py as their defaults, and by the
# settings below: one definition each.
MAX_CONCURRENT_RPCS = 1000
HTTP_READ_TIMEOUT_SECONDS = 10.0
HTTP_KEEP_ALIVE_TIMEOUT_SECONDS = 5
HTTP_MAX_CONNECTIONS = 1000


# Settings of `serve-http` (the edge) alone, and everything the edge takes.
EDGE_ONLY = ("upstream", "upstream_ca", "upstream_cert", "upstream_key")
EDGE_SETTINGS = (
    "http_host",
    "http_port",
    "issuer",
    "grace_period_seconds",
    "http_read_timeout_seconds",
    "http_keep_alive_timeout_seconds",
    "http_max_connections",
    "tls_cert",
    "tls_key",
    "http_tls_cert",
    "http_tls_key",
    "allow_plaintext",
    "metrics_host",
    "metrics_port",
    "metrics_org_labels",
    *EDGE_ONLY,
    "log_level",
    "log_format",
)
HTTPS_SCHEME = "https://"


def issuer_problem(issuer: str, *, dev: bool) -> str | None:
    """What is wrong with ``issuer`` as an issuer identifier, or None.

    RFC 8414 section 2: a URL with the https scheme, a host, and no query or
    fragment. Plain http is accepted for a loopback host (a trial or a test on
    one machine), and anywhere under --dev.
    """
    parsed = urllib.parse.urlsplit(issuer)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        return f"--issuer {issuer!r} must be an absolute https URL, e.g. https://auth.example.com"
    if parsed.query or parsed.fragment or "?" in issuer or "#" in issuer:
        return f"--issuer {issuer!r} must have no query or fragment (RFC 8414 section 2)"
    if parsed.scheme == "http" and not dev and not is_loopback_host(parsed.hostname):
        return (
            f"--issuer {issuer!r} must use https (RFC 8414 section 2): it is the public "
            "URL partners reach, even when a load balancer terminates TLS in front"
        )
    return None


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """A certificate chain and its private key, as two PEM files."""

    cert: str
    key: str


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
        "",
        "Issuer URL, the `iss` claim (RFC 9068 section 2.2): the public https URL partners "
        "use, the same on every replica. Required unless --dev (where it defaults to "
        "http://<http host:port>).",
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
    client_assertion_max_lifetime_seconds: int = setting(
        defaults.CLIENT_ASSERTION_MAX_LIFETIME_SECONDS,
        "private_key_jwt: how far ahead of now a client assertion's exp may be (RFC 7523 "
        "section 3); a longer-lived assertion is refused.",
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
    max_concurrent_rpcs: int = setting(
        MAX_CONCURRENT_RPCS,
        "gRPC calls admitted at once per process, running or queued for a thread; "
        "beyond it a call fails at once with RESOURCE_EXHAUSTED instead of queueing.",
    )
    http_read_timeout_seconds: float = setting(
        HTTP_READ_TIMEOUT_SECONDS,
        "Seconds an HTTP client has to send a whole request (headers and body) once "
        "connected or once it starts one; a slower client is disconnected (slowloris).",
    )
    http_keep_alive_timeout_seconds: int = setting(
        HTTP_KEEP_ALIVE_TIMEOUT_SECONDS,
        "Seconds an idle keep-alive HTTP connection stays open between requests.",
    )
    http_max_connections: int = setting(
        HTTP_MAX_CONNECTIONS,
        "HTTP connections per process; beyond it requests are answered 503 at once.",
    )
    processes: int = setting(
        1,
        "Server processes sharing the gRPC and HTTP ports (SO_REUSEPORT); set it to the "
        "number of cores to use them all.",
    )
    cpu_affinity: str = setting(
        "auto",
        "auto: when --processes equals the CPUs the server may use (its affinity mask, "
        "a container's cpuset) and no cgroup quota gives it fewer, each worker runs on "
        "one CPU of its own (gRPC calls hop between threads: ~1.2-1.6x the gRPC rate on "
        "2 cores); off: the scheduler places them (for CPUs shared with other busy work "
        "without a quota).",
    )
    tls_cert: str = setting(
        "",
        "PEM certificate chain (leaf first) for the gRPC and HTTP listeners; with --tls-key, "
        "both serve TLS only. Reloaded on SIGHUP.",
    )
    tls_key: str = setting("", "PEM private key of --tls-cert (unencrypted).")
    grpc_tls_cert: str = setting(
        "", "Certificate chain for the gRPC listener alone, instead of --tls-cert."
    )
    grpc_tls_key: str = setting("", "Private key of --grpc-tls-cert.")
    http_tls_cert: str = setting(
        "", "Certificate chain for the OAuth HTTP listener alone, instead of --tls-cert."
    )
    http_tls_key: str = setting("", "Private key of --http-tls-cert.")
    tls_client_ca: str = setting(
        "",
        "PEM CA certificates for mutual TLS on gRPC: a client without a certificate "
        "signed by one of them is refused during the handshake. Needs gRPC TLS.",
    )
    allow_plaintext: bool = setting(
        False,
        "Serve without TLS on an address other than loopback (and, for serve-http, call a "
        "non-loopback upstream without TLS): only when a load balancer or sidecar on the "
        "way terminates TLS.",
    )
    metrics_host: str = setting(
        "127.0.0.1", "Address the Prometheus /metrics endpoint binds (plain HTTP)."
    )
    metrics_port: int = setting(
        9464,
        "Port of /metrics, never the OAuth port; 0 picks a free one. With --processes N, "
        "worker i serves its own metrics on this port + i.",
    )
    metrics_org_labels: bool = setting(
        False,
        "Label the tokens-issued counter by org_id (one series per organization); "
        "off, it is one series.",
    )
    upstream: str = setting(
        "",
        "serve-http: host:port of the m2mauth gRPC server whose TokenService answers; "
        "https://host:port for TLS with the system roots.",
    )
    upstream_ca: str = setting(
        "", "serve-http: PEM CA certificates to verify the upstream with (implies TLS)."
    )
    upstream_cert: str = setting(
        "",
        "serve-http: client certificate chain presented to the upstream (mutual TLS; implies TLS).",
    )
    upstream_key: str = setting("", "serve-http: private key of --upstream-cert.")
    console: bool = setting(
        False,
        "Serve the operators' web console under /console on the OAuth HTTP listener "
        "(sign-in with an admin key). Always on with --dev.",
    )
    console_idle_timeout_seconds: int = setting(
        900, "A console session unused this long ends; the operator signs in again."
    )
    console_session_max_seconds: int = setting(
        28800, "A console session ends this long after sign-in, however busy."
    )
    log_level: str = setting("INFO", "Log level: DEBUG, INFO, WARNING or ERROR.")
    log_format: str = setting("json", "Log format: json (structured) or text.")
    # --dev: the embedded default (SQLite and a root key file under ./var).
    dev: bool = False
    data_dir: Path = DEV_DATA_DIR
    # Set by with_defaults when the issuer is this host's own URL rather than one
    # the operator chose: fine for --dev and for local commands that sign nothing,
    # refused by `serve` otherwise.
    issuer_is_default: bool = False

    def grpc_tls(self) -> CertificateFiles | None:
        """The gRPC listener's certificate: its own pair, else the shared one, else none."""
        return _pair(self.grpc_tls_cert, self.grpc_tls_key) or _pair(self.tls_cert, self.tls_key)

    def http_tls(self) -> CertificateFiles | None:
        """The OAuth HTTP listener's certificate: its own pair, else the shared one."""
        return _pair(self.http_tls_cert, self.http_tls_key) or _pair(self.tls_cert, self.tls_key)

    def upstream_target(self) -> tuple[str, bool]:
        """(host:port, whether to use TLS) of serve-http's --upstream."""
        target = self.upstream
        tls = bool(self.upstream_ca or self.upstream_cert)
        if target.startswith(HTTPS_SCHEME):
            target, tls = target[len(HTTPS_SCHEME) :].rstrip("/"), True
        return target, tls

    def with_defaults(self) -> Settings:
        """Fill the settings whose default depends on others."""
        changes: dict[str, Any] = {}
        if not self.database_url and self.dev:
            changes["database_url"] = f"sqlite:///{self.data_dir / 'm2mauth.db'}"
        if self.dev:
            changes["console"] = True
        if not self.root_key_file and not self.root_key and self.dev:
            changes["root_key_file"] = str(self.data_dir / "root.key")
        # With --http-port 0 the port is known only once bound; serve fills it then.
        if self.issuer or self.http_port:
            scheme = "https" if self.http_tls() else "http"
            issuer = self.issuer or f"{scheme}://{self.http_host}:{self.http_port}"
            changes["issuer"] = issuer
            changes["audience"] = self.audience or issuer
            changes["issuer_is_default"] = self.issuer_is_default or not self.issuer
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

    def _tls_problems(self) -> list[str]:
        out: list[str] = []
        for prefix in ("tls", "grpc_tls", "http_tls", "upstream"):
            cert, key = getattr(self, f"{prefix}_cert"), getattr(self, f"{prefix}_key")
            if bool(cert) != bool(key):
                flag = "--" + prefix.replace("_", "-")
                out.append(f"{flag}-cert and {flag}-key go together: set both")
        if self.tls_client_ca and self.grpc_tls() is None:
            out.append("--tls-client-ca needs TLS on gRPC: set --tls-cert/--tls-key")
        return out

    def _plaintext_problems(self, listeners: tuple[str, ...]) -> list[str]:
        """Listeners that would take secrets in clear from other machines."""
        if self.allow_plaintext:
            return []
        out = []
        for name in listeners:
            host = getattr(self, f"{name}_host")
            if getattr(self, f"{name}_tls")() is None and not is_loopback_host(host):
                out.append(
                    f"--{name}-host {host or '(all addresses)'} is reachable from other "
                    f"machines but {_LISTENER[name]} has no TLS: pass --tls-cert and --tls-key (or "
                    f"--{name}-tls-cert/--{name}-tls-key), or --allow-plaintext if a load "
                    "balancer or sidecar terminates TLS in front of it"
                )
        return out

    def plaintext_warnings(self) -> list[str]:
        """Under --dev, what production would refuse, as warnings."""
        return self._plaintext_problems(("grpc", "http")) if self.dev else []

    def edge_problems(self) -> list[str]:
        """What is wrong with the settings of `serve-http`."""
        out = self._tls_problems() + self._plaintext_problems(("http",))
        target, tls = self.upstream_target()
        if not target or "://" in target or ":" not in target:
            out.append("--upstream must be host:port (or https://host:port for TLS)")
        elif not (tls or self.allow_plaintext or is_loopback_host(target.rsplit(":", 1)[0])):
            out.append(
                f"--upstream {target} is another machine and the hop has no TLS (client "
                "secrets would cross it in clear): pass --upstream-ca (or an https:// "
                "upstream), or --allow-plaintext if a sidecar encrypts the hop"
            )
        return out

    def _limit_problems(self) -> list[str]:
        out: list[str] = []
        if self.max_concurrent_rpcs < 1 or self.http_max_connections < 1:
            out.append("--max-concurrent-rpcs and --http-max-connections must be at least 1")
        if not 0 < self.http_read_timeout_seconds <= 3600:
            out.append("--http-read-timeout-seconds must be above 0 and at most 3600")
        if not 1 <= self.http_keep_alive_timeout_seconds <= 3600:
            out.append("--http-keep-alive-timeout-seconds must be between 1 and 3600")
        if not 10 <= self.client_assertion_max_lifetime_seconds <= 3600:
            out.append("--client-assertion-max-lifetime-seconds must be between 10 and 3600")
        return out

    def _issuer_problems(self) -> list[str]:
        if self.issuer and not self.issuer_is_default:
            problem = issuer_problem(self.issuer, dev=self.dev)
            return [problem] if problem else []
        if self.dev:
            return []
        # The default issuer names this host and port: replicas would each sign
        # with their own, and a token revoked through another replica would be
        # taken for a foreign one. RFC 9068 section 2.2, RFC 8414 section 2.
        return [
            "no issuer: set --issuer / M2MAUTH_ISSUER to the public https URL partners "
            "use (e.g. https://auth.example.com); every replica needs the same one"
        ]

    def _console_problems(self) -> list[str]:
        out: list[str] = []
        if not 1 <= self.console_idle_timeout_seconds <= self.console_session_max_seconds:
            out.append(
                "--console-idle-timeout-seconds must be at least 1 and at most "
                "--console-session-max-seconds"
            )
        if self.console_session_max_seconds > 7 * 24 * 3600:
            out.append("--console-session-max-seconds must be at most a week (604800)")
        return out

    def _process_problems(self) -> list[str]:
        out: list[str] = []
        if not 1 <= self.processes <= 256:
            out.append("--processes must be between 1 and 256")
        if self.metrics_port and self.metrics_port + self.processes - 1 > 65535:
            out.append("--metrics-port + --processes must stay below 65536")
        if self.cpu_affinity not in CPU_AFFINITY_MODES:
            out.append(f"--cpu-affinity must be one of {', '.join(CPU_AFFINITY_MODES)}")
        return out

    def problems(self) -> list[str]:
        """What is wrong with these settings, as sentences an operator can act on."""
        out = self._database_problems() + self._edge_problems() + self._tls_problems()
        if not self.dev:
            # Under --dev only a warning (plaintext_warnings): trying m2mauth out on a
            # LAN address is fine; serving partners' secrets in clear is not.
            out += self._plaintext_problems(("grpc", "http"))
        out += self._issuer_problems()
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
        out += self._limit_problems() + self._console_problems()
        if not 0.1 <= self.store_timeout_seconds <= 600:
            out.append("--store-timeout-seconds must be between 0.1 and 600")
        out += self._process_problems()
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            out.append("--log-level must be DEBUG, INFO, WARNING or ERROR")
        if self.log_format not in ("json", "text"):
            out.append("--log-format must be json or text")
        return out


_LISTENER = {"grpc": "gRPC", "http": "OAuth HTTP"}


def _pair(cert: str, key: str) -> CertificateFiles | None:
    return CertificateFiles(cert, key) if cert and key else None


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
