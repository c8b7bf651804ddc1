"""``m2mauth.verify`` stays light: pyjwt and cryptography only, integrations only on demand."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "grpc",
    "grpc_health",
    "google",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "starlette",
    "uvicorn",
)


def imported_after(statement: str) -> set[str]:
    probe = (
        "import sys, json\n"
        f"{statement}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    "statement",
    ["import m2mauth.verify", "from m2mauth.verify.asgi import BearerAuthMiddleware"],
)
def test_no_server_framework_or_sql_at_import(statement: str) -> None:
    loaded = imported_after(statement)
    assert "jwt" in loaded
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_the_grpc_interceptor_imports_grpc_only_when_asked() -> None:
    loaded = imported_after("from m2mauth.verify.grpc_interceptor import TokenAuthInterceptor")
    assert "grpc" in loaded
    assert loaded.isdisjoint({"sqlalchemy", "starlette", "uvicorn"})
