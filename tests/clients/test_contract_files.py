"""The contract ships with the code: .proto copies, a descriptor set, the google.rpc files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import google.rpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

import m2mauth.v1

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTOS = REPO_ROOT / "protos" / "m2mauth" / "v1"
PACKAGE = Path(m2mauth.v1.__file__).parent
DESCRIPTOR_SET = PACKAGE / "m2mauth.binpb"
VENDORED = REPO_ROOT / "third_party" / "googleapis" / "google" / "rpc"
PROTO_NAMES = sorted(p.name for p in PROTOS.glob("*.proto"))


def test_the_package_holds_a_copy_of_every_proto() -> None:
    copies = sorted(p.name for p in PACKAGE.glob("*.proto"))
    assert copies == PROTO_NAMES
    for name in PROTO_NAMES:
        assert (PACKAGE / name).read_bytes() == (PROTOS / name).read_bytes(), name


def test_the_descriptor_set_describes_the_api_and_its_errors() -> None:
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    names = {f.name for f in files.file}
    assert {f"m2mauth/v1/{n}" for n in PROTO_NAMES} <= names
    assert {"google/rpc/status.proto", "google/rpc/error_details.proto"} <= names
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:  # dependencies come first (--include_imports)
        pool.Add(file)
    assert pool.FindEnumTypeByName("m2mauth.v1.ErrorReason").values_by_number[9].name == (
        "ERROR_REASON_INVALID_CLIENT"
    )
    assert pool.FindMessageTypeByName("google.rpc.ErrorInfo").fields_by_name["reason"]
    token_service = pool.FindServiceByName("m2mauth.v1.TokenService")
    assert token_service.methods_by_name["IssueToken"].input_type.name == "IssueTokenRequest"
    # --include_source_info: the comments clients read are in it.
    (errors,) = [f for f in files.file if f.name == "m2mauth/v1/errors.proto"]
    assert any("ERROR_REASON_" in loc.leading_comments for loc in errors.source_code_info.location)


@pytest.mark.parametrize("name", ["status.proto", "error_details.proto"])
def test_the_vendored_google_rpc_protos_match_the_pinned_package(name: str) -> None:
    shipped = Path(google.rpc.__path__[0]) / name
    assert (VENDORED / name).read_bytes() == shipped.read_bytes(), (
        f"third_party/googleapis/google/rpc/{name} differs from googleapis-common-protos': "
        "copy it again"
    )


def test_the_wheel_ships_the_protos_and_the_descriptor_set(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        cwd=REPO_ROOT,
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("m2mauth-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {f"m2mauth/v1/{n}" for n in PROTO_NAMES} <= names
    assert "m2mauth/v1/m2mauth.binpb" in names
