"""The README's "Calling m2mauth from other languages": its Python and buf curl
examples of IssueToken, run exactly as written against a real gRPC server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from m2mauth.core.applications import ApplicationFields
from tests.interop.client_flow import ENV
from tests.interop.conftest import REPO_ROOT, GrpcEndpoint

README = REPO_ROOT / "README.md"
SECTION = "## Calling m2mauth from other languages"


def blocks(language: str) -> list[str]:
    text = README.read_text()
    assert SECTION in text, f"README.md lost its {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"^```{language}\n(.*?)^```", section, re.MULTILINE | re.DOTALL)


@pytest.fixture
def partner_env(grpc_endpoint: GrpcEndpoint) -> dict[str, str]:
    container = grpc_endpoint.container
    org = container.organizations.create(ENV, "README partner", "", True)
    app = container.applications.create(ENV, org.id, ApplicationFields(name="readme"))
    _, secret = container.applications.create_secret(ENV, app.id, None)
    return {
        **os.environ,
        "M2MAUTH_GRPC_ADDR": f"127.0.0.1:{grpc_endpoint.port}",
        "M2MAUTH_CLIENT_ID": app.client_id,
        "M2MAUTH_CLIENT_SECRET": secret,
    }


def test_the_python_example_issues_a_token(partner_env: dict[str, str], tmp_path: Path) -> None:
    (source,) = blocks("python")
    script = tmp_path / "issue.py"
    script.write_text(source)
    completed = subprocess.run(
        [sys.executable, str(script)],
        env=partner_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    token_type, expires_in = completed.stdout.split()
    assert token_type == "Bearer"
    assert 0 < int(expires_in) <= 3600


def test_the_buf_curl_example_issues_a_token(partner_env: dict[str, str]) -> None:
    (source,) = [b for b in blocks("sh") if "buf curl" in b]
    completed = subprocess.run(
        ["bash", "-c", source],
        cwd=REPO_ROOT,
        env=partner_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    reply = json.loads(completed.stdout)
    assert reply["tokenType"] == "Bearer"
    assert reply["expiresIn"] == str(int(reply["expiresIn"]))  # int64: a JSON string
    claims = jwt.decode(reply["accessToken"], options={"verify_signature": False})
    assert claims["client_id"] == partner_env["M2MAUTH_CLIENT_ID"]
