"""Which database a URL names, the one-line error for one m2mauth cannot open, and
how long a wait on the database may last by default.

Apart from :mod:`m2mauth.store` so that settings can be checked without
loading any store.
"""

from __future__ import annotations

SUPPORTED_URLS = "sqlite:///path/to/m2mauth.db, postgresql://user@host:5432/dbname or memory://"
SUPPORTED_DATABASES = "SQLite and PostgreSQL (and memory:// for tests)"
MEMORY_SCHEME = "memory"


class UnsupportedDatabaseUrl(ValueError):
    """A database URL that names no store m2mauth has."""

    def __init__(self, url: str) -> None:
        # Only the scheme is repeated: the rest of a URL may hold a password, and so
        # may a value that is not a URL at all (user:password@host).
        named = f"{url.partition('://')[0]}://..." if "://" in url else "(not a URL)"
        super().__init__(
            f"unsupported database URL {named}: m2mauth supports {SUPPORTED_DATABASES}; "
            f"use {SUPPORTED_URLS}"
        )


def scheme_of(url: str) -> str:
    """The backend a database URL names: sqlite, postgresql or memory ('' if none)."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        return ""
    backend = scheme.partition("+")[0]
    if backend in ("postgresql", "postgres"):
        return "postgresql"
    return backend if backend in ("sqlite", MEMORY_SCHEME) else ""


def redact(url: str) -> str:
    """The URL with its password hidden, to print it."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        creds, _, host = rest.rpartition("@")
        user = creds.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}" if ":" in creds else url
    return url


# How long one wait on the database may last before the store gives up and
# reports it unavailable (the --store-timeout-seconds default). Here, and not
# in m2mauth.store, so that settings can name it without loading SQLAlchemy.
STORE_TIMEOUT_SECONDS = 2.0
