"""The layering of ARCHITECTURE.md, checked on the import graph of the source.

Data flows one way (transport -> core -> store interfaces): the core imports
no settings, no transport and no database library, and no two modules import
each other, directly or around a cycle. Every import counts, including those
inside functions: a lazy import still couples the modules.
"""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest

import m2mauth
from tests.unit.conftest import SocketOpened

PACKAGE = Path(m2mauth.__file__).parent
GENERATED = PACKAGE / "v1"
# What the core may never import (module-name prefixes).
FORBIDDEN_IN_CORE = (
    "m2mauth.config",
    "m2mauth.bootstrap",
    "m2mauth.grpc",
    "m2mauth.http",
    "m2mauth.store",
    "m2mauth.v1",
    "grpc",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "psycopg",
    "alembic",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute names, at any depth of the file."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # "from m2mauth.core import audit" imports the module m2mauth.core.audit;
            # "from m2mauth.core.audit import event" the module m2mauth.core.audit.
            found.update(f"{target}.{alias.name}" for alias in node.names)
            found.add(target)
    return found


def ancestors(name: str) -> set[str]:
    """The packages Python imports before ``name`` whatever the code says."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def source_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for path in PACKAGE.rglob("*.py")
        if GENERATED not in path.parents and "migrations" not in path.parts
    }


def graph() -> dict[str, set[str]]:
    modules = source_modules()
    return {
        name: (imports_of(path) & modules.keys()) - {name} - ancestors(name)
        for name, path in modules.items()
    }


def forbidden(imported: str) -> bool:
    return any(imported == p or imported.startswith(p + ".") for p in FORBIDDEN_IN_CORE)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_core_imports_no_settings_transport_or_database() -> None:
    offenders = {
        name: sorted(i for i in imports_of(path) if forbidden(i))
        for name, path in source_modules().items()
        if name.startswith("m2mauth.core.")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_no_module_takes_part_in_an_import_cycle() -> None:
    assert cycles(graph()) == []


def test_the_checks_see_what_they_look_for() -> None:
    # The checks would pass vacuously if the parser found nothing.
    edges = graph()
    assert "m2mauth.core.interfaces" in edges["m2mauth.core.tokens"]
    assert "m2mauth.core.tokens" in edges["m2mauth.bootstrap"]
    assert forbidden("sqlalchemy.exc")
    assert not forbidden("m2mauth.core.errors")
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    # A function-level import counts like any other.
    assert "m2mauth.store.sql" in imports_of(PACKAGE / "store" / "__init__.py")


def test_the_unit_tier_opens_no_socket() -> None:
    # tests/unit/conftest.py refuses sockets, so a test that needs a database
    # or a server fails here instead of quietly slowing the tier down.
    with pytest.raises(SocketOpened):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(SocketOpened):
        socket.create_connection(("127.0.0.1", 5432))
