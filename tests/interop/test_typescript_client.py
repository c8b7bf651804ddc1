"""The TypeScript client (clients/typescript) over gRPC, against a real server.

Its example program runs the whole flow with Connect for Node and jose; this
test checks what it reports against the server's own view. tsc compiles the
package once per run.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.interop.client_flow import check_flow
from tests.interop.conftest import (
    NODE_TIMEOUT_SECONDS,
    REPO_ROOT,
    GrpcEndpoint,
    typescript_client_node,
)

PACKAGE = REPO_ROOT / "clients" / "typescript"


@pytest.fixture(scope="session")
def compiled_client() -> Path:
    """tsc -p clients/typescript: the package and its example, type-checked, in dist/."""
    node = typescript_client_node()
    completed = subprocess.run(
        [node, str(REPO_ROOT / "node_modules/typescript/bin/tsc"), "-p", str(PACKAGE)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, f"tsc failed:\n{completed.stdout}\n{completed.stderr}"
    return PACKAGE / "dist" / "examples" / "flow.js"


def run_flow(script: Path, endpoint: GrpcEndpoint) -> dict[str, Any]:
    env = {
        **os.environ,
        "M2MAUTH_GRPC_URL": endpoint.url,
        "M2MAUTH_ADMIN_KEY": endpoint.admin_key,
        "M2MAUTH_ISSUER": endpoint.issuer,
    }
    completed = subprocess.run(
        [typescript_client_node(), str(script)],
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_SECONDS,
        cwd=PACKAGE,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, (
        f"the TypeScript example exited {completed.returncode}\n"
        f"stdout: {completed.stdout}\nstderr: {completed.stderr}"
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def test_the_typescript_example_runs_the_whole_flow(
    compiled_client: Path, grpc_endpoint: GrpcEndpoint
) -> None:
    out = run_flow(compiled_client, grpc_endpoint)
    check_flow(out, grpc_endpoint)
