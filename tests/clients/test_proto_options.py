"""Every .proto names its package in every language we expect clients in.

Adding or changing these options later is a breaking change under buf.yaml's
FILE rules (generated code moves), so a new file must come with them. The
values are what each ecosystem expects: a Go import path, a reverse-DNS Java
package with one class per message, PascalCase namespaces for C#, PHP and Ruby,
and a three-letter Objective-C prefix.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "protos" / "m2mauth" / "v1"
GO_MODULE = "github.com/m2mauth/m2mauth/clients/go"

EXPECTED = {
    "go_package": f"{GO_MODULE}/m2mauth/v1;m2mauthv1",
    "java_package": "io.github.m2mauth.v1",
    "java_multiple_files": True,
    "csharp_namespace": "M2mAuth.V1",
    "php_namespace": "M2mAuth\\V1",
    "ruby_package": "M2mAuth::V1",
    "objc_class_prefix": "MMA",
}

PROTO_FILES = sorted(p.name for p in PROTO_DIR.glob("*.proto"))


def file_options(proto_name: str) -> descriptor_pb2.FileOptions:
    """The options of protos/m2mauth/v1/<proto_name>, as compiled into the Python code."""
    module = importlib.import_module(f"m2mauth.v1.{proto_name.removesuffix('.proto')}_pb2")
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)
    return proto.options


def test_there_are_protos() -> None:
    assert "token_service.proto" in PROTO_FILES


@pytest.mark.parametrize("proto_name", PROTO_FILES)
def test_language_options(proto_name: str) -> None:
    options = file_options(proto_name)
    present = {field.name: value for field, value in options.ListFields()}
    for name, value in EXPECTED.items():
        assert name in present, f"{proto_name}: option {name} is missing"
        assert present[name] == value, f"{proto_name}: option {name}"
    # The outer class holds only the file descriptor (java_multiple_files), and
    # is named after the file so it never clashes with a message.
    camel = "".join(part.capitalize() for part in proto_name.removesuffix(".proto").split("_"))
    assert options.java_outer_classname == f"{camel}Proto"
