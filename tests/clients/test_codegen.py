"""Other languages' generators accept the protos as they are: no M flags, no overrides.

protoc from Debian (scripts/client-toolchains) has every built-in generator;
grpcio-tools' protoc has only Python's. Each test generates into a temporary
directory and checks where the code lands and what it is called.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.toolchains import require_command

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTOS = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "protos").rglob("*.proto"))


def protoc(*outputs: str) -> None:
    executable = require_command("protoc")
    completed = subprocess.run(
        [executable, "-I", "protos", *outputs, *PROTOS],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == "", completed.stderr  # no warnings either


def test_protoc_gen_go_needs_no_flags(tmp_path: Path) -> None:
    require_command("protoc-gen-go")
    require_command("protoc-gen-go-grpc")
    protoc(f"--go_out={tmp_path}", f"--go-grpc_out={tmp_path}")
    package = tmp_path / "github.com/m2mauth/m2mauth/clients/go/m2mauth/v1"
    assert (package / "token_service.pb.go").read_text().count("\npackage m2mauthv1\n") == 1
    assert "func NewTokenServiceClient(" in (package / "token_service_grpc.pb.go").read_text()


def test_java_gets_one_class_per_message_in_its_own_package(tmp_path: Path) -> None:
    protoc(f"--java_out={tmp_path}")
    package = tmp_path / "io/github/m2mauth/v1"
    names = {p.name for p in package.iterdir()}
    assert {"IssueTokenRequest.java", "ErrorReason.java", "TokenServiceProto.java"} <= names
    assert not any("OuterClass" in name for name in names)
    assert {p.relative_to(tmp_path).parts[:4] for p in tmp_path.rglob("*.java")} == {
        ("io", "github", "m2mauth", "v1")
    }
    source = (package / "ErrorReason.java").read_text()
    assert "package io.github.m2mauth.v1;" in source
    assert "public enum ErrorReason" in source


@pytest.mark.parametrize(
    ("flag", "path", "expected"),
    [
        ("--csharp_out", "TokenService.cs", "namespace M2mAuth.V1 {"),
        ("--php_out", "M2mAuth/V1/IssueTokenRequest.php", "namespace M2mAuth\\V1;"),
        ("--ruby_out", "m2mauth/v1/token_service_pb.rb", "module M2mAuth\n  module V1"),
        ("--objc_out", "m2mauth/v1/TokenService.pbobjc.h", "@interface MMAIssueTokenRequest"),
    ],
)
def test_other_languages_get_their_namespaces(
    tmp_path: Path, flag: str, path: str, expected: str
) -> None:
    protoc(f"{flag}={tmp_path}")
    assert expected in (tmp_path / path).read_text()
