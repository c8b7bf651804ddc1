"""Toolchains some tests need besides Python and Node: Go and protoc, from Debian.

``scripts/client-toolchains`` installs them (CI does, and ``make client-toolchains``).
Without them those tests skip, and the run ends with a loud line saying so;
with ``M2MAUTH_REQUIRE_TOOLCHAINS=1`` (set by .ci/run) they fail instead, as the
PostgreSQL suite does with M2MAUTH_REQUIRE_POSTGRES.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE_ENV = "M2MAUTH_REQUIRE_TOOLCHAINS"
SKIP_PREFIX = "TOOLCHAIN MISSING"
# The Go libraries the client builds against, as Debian installs them (GOPATH layout).
DEBIAN_GOPATH = Path("/usr/share/gocode")
GO_LIBRARIES = (
    # 1.4 and later (registry.go): grpc-go marshals google.golang.org/protobuf
    # messages through it; Debian's 1.3 cannot.
    "github.com/golang/protobuf/proto/registry.go",
    "google.golang.org/grpc",
    "google.golang.org/protobuf",
    "google.golang.org/genproto/googleapis/rpc/errdetails",
    "gopkg.in/square/go-jose.v2",
)


def missing(what: str) -> NoReturn:
    reason = f"{SKIP_PREFIX}: {what}: run `make client-toolchains` (Debian packages)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def require_command(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"`{name}` is not on PATH")
    return path


def require_go() -> str:
    """``go``, with Debian's Go libraries under /usr/share/gocode, or a skip/failure."""
    go = require_command("go")
    absent = [lib for lib in GO_LIBRARIES if not (DEBIAN_GOPATH / "src" / lib).exists()]
    if absent:
        missing(f"Go libraries not in {DEBIAN_GOPATH}: {', '.join(absent)}")
    return go
