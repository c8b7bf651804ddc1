"""The Go client (clients/go) over gRPC, against a real server.

Built once per run, in GOPATH mode against Debian's Go libraries (no module
proxy here): gofmt, go vet and the helper's unit tests first, then the example
program runs the whole flow and reports what it saw.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.interop.client_flow import check_flow
from tests.interop.conftest import REPO_ROOT, GrpcEndpoint
from tests.toolchains import DEBIAN_GOPATH, require_command, require_go

MODULE = "github.com/m2mauth/m2mauth/clients/go"
GO_TIMEOUT_SECONDS = 600


def go_env(gopath: Path) -> dict[str, str]:
    return {
        **os.environ,
        "GOPATH": f"{gopath}{os.pathsep}{DEBIAN_GOPATH}",
        "GO111MODULE": "off",
        "GOPROXY": "off",
        "GOFLAGS": "",
    }


@pytest.fixture(scope="session")
def go_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = require_go()
    gofmt = require_command("gofmt")
    gopath = tmp_path_factory.mktemp("gopath")
    source = gopath / "src" / MODULE
    shutil.copytree(REPO_ROOT / "clients" / "go", source)
    env = go_env(gopath)

    def run(*args: str) -> str:
        completed = subprocess.run(
            args,
            cwd=source,
            env=env,
            capture_output=True,
            text=True,
            timeout=GO_TIMEOUT_SECONDS,
            check=False,
        )
        assert completed.returncode == 0, (
            f"{' '.join(args)} exited {completed.returncode}\n"
            f"{completed.stdout}\n{completed.stderr}"
        )
        return completed.stdout

    assert run(gofmt, "-l", ".") == "", "gofmt would change these files"
    run(go, "vet", "./...")
    run(go, "test", "./m2mauth/")
    binary = gopath / "bin" / "flow"
    run(go, "build", "-o", str(binary), "./examples/flow")
    return binary


def test_the_go_example_runs_the_whole_flow(go_example: Path, grpc_endpoint: GrpcEndpoint) -> None:
    env = {
        **os.environ,
        "M2MAUTH_GRPC_ADDR": f"127.0.0.1:{grpc_endpoint.port}",
        "M2MAUTH_ADMIN_KEY": grpc_endpoint.admin_key,
        "M2MAUTH_ISSUER": grpc_endpoint.issuer,
    }
    completed = subprocess.run(
        [str(go_example)], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert completed.returncode == 0, (
        f"the Go example exited {completed.returncode}\n"
        f"stdout: {completed.stdout}\nstderr: {completed.stderr}"
    )
    out: dict[str, Any] = json.loads(completed.stdout)
    check_flow(out, grpc_endpoint)
