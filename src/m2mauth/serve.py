"""Running the server process: start-up checks, bootstrap, serve, graceful stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from m2mauth.app import build_container, load_root_key
from m2mauth.config import Settings
from m2mauth.grpc.server import create_server
from m2mauth.store.schema import SchemaError, migrate
from m2mauth.store.sql import SqlStore

log = logging.getLogger("m2mauth")


def run(settings: Settings, stop: threading.Event, echo: Callable[[str], None] = print) -> int:
    """Serve until ``stop`` is set; return the process exit code."""
    if settings.dev:
        migrate(settings.database_url)
    store = SqlStore(settings.database_url)
    try:
        store.check_schema()
    except SchemaError as exc:
        echo(f"m2mauth: cannot start: {exc}")
        store.close()
        return 2
    try:
        root, created = load_root_key(settings)
    except (OSError, ValueError) as exc:
        echo(f"m2mauth: cannot start: root key: {exc}")
        store.close()
        return 2
    if created:
        log.warning(
            "created a new root key in %s (mode 0600); it encrypts signing keys and keys "
            "credential hashes: back it up, and set M2MAUTH_ROOT_KEY in production",
            settings.root_key_file,
        )
    container = build_container(settings, store, root)
    first_admin_key = container.admin_keys.bootstrap() if settings.dev else None
    grpc_server = create_server(
        container, settings.grpc_host, settings.grpc_port, workers=settings.workers
    )
    target = f"{settings.grpc_host}:{grpc_server.port}"
    log.info("serving gRPC", extra={"grpc_target": target, "issuer": settings.issuer})
    echo(f"m2mauth is serving gRPC on {target} (store: {_redact(settings.database_url)})")
    if first_admin_key:
        echo("")
        echo("This is a new database. Its first admin key (shown only now):")
        echo("")
        echo(f"    export M2MAUTH_ADMIN_KEY={first_admin_key}")
        echo("")
        echo("Send it as gRPC metadata `authorization: Bearer $M2MAUTH_ADMIN_KEY`.")
        echo("Next: create an organization, an application and a client secret; see README.md.")
    echo("Press Ctrl+C to stop.")
    stop.wait()
    log.info("shutting down: health NOT_SERVING, draining in-flight calls")
    grpc_server.stop(settings.grace_period_seconds)
    store.close()
    log.info("stopped")
    return 0


def _redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        creds, _, host = rest.rpartition("@")
        user = creds.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}" if ":" in creds else url
    return url
