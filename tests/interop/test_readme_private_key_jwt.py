"""The README's "No secret: use a key" section, run as written (its placeholders
replaced by a real server's values): the key pair and JWK Set commands, the
`m2mauth apps update` command, and the authlib example."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from tests.cli.conftest import run_cli
from tests.grpc.conftest import start_server
from tests.http.conftest import Shim
from tests.interop.conftest import REPO_ROOT, verify_access_token

README = REPO_ROOT / "README.md"
SECTION = "### No secret: use a key (private_key_jwt)"


def blocks(language: str) -> list[str]:
    text = README.read_text()
    assert SECTION in text, f"README.md lost its {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n### ", 1)[0]
    found = re.findall(rf"^ *```{language}\n(.*?)^ *```", section, re.MULTILINE | re.DOTALL)
    # The blocks are indented under a numbered list: take the indentation off.
    return [re.sub(r"^   ", "", block, flags=re.MULTILINE) for block in found]


def test_the_readme_private_key_jwt_walkthrough(in_process_shim: Shim, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not on PATH: the README's first step needs it")
    shim = in_process_shim
    partner = shim.partner(scopes=("invoices:read",))
    make_keys, update_app = blocks("sh")
    env = {
        **os.environ,
        # `python` in the README is the partner's, with pyjwt: ours here.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    done = subprocess.run(
        ["bash", "-euc", make_keys],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    jwks = json.loads((tmp_path / "jwks.json").read_text())
    assert jwks["keys"][0]["kid"] == "partner-2026-11"

    # The platform's step: the CLI against a gRPC server on the shim's container.
    assert update_app.strip().startswith("m2mauth apps update app_01J...")
    args = update_app.split()[1:]
    args[args.index("app_01J...")] = partner.app_id
    args[args.index("jwks.json")] = str(tmp_path / "jwks.json")
    server = start_server(shim.container)
    try:
        result = run_cli(
            args,
            env={
                "M2MAUTH_SERVER": f"127.0.0.1:{server.port}",
                "M2MAUTH_ADMIN_KEY": shim.admin_key,
            },
        )
    finally:
        server.stop(0)
    assert result.exit_code == 0, result.stderr
    assert "PRIVATE_KEY_JWT" in result.stdout

    (example,) = blocks("python")
    script = example.replace("https://auth.example.com", shim.issuer).replace(
        '"client_01J..."', json.dumps(partner.client_id)
    )
    script += "\nimport json\nprint(json.dumps(token))\n"
    (tmp_path / "partner.py").write_text(script)
    ran = subprocess.run(
        [sys.executable, "partner.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    token = json.loads(ran.stdout)
    claims = verify_access_token(shim, token["access_token"], partner.org_id, partner.client_id)
    assert jwt.get_unverified_header(token["access_token"])["typ"] == "at+jwt"
    assert claims["scope"] == "invoices:read"
