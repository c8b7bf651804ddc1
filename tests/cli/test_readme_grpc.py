"""The README's "gRPC in 30 seconds" Python block, run verbatim against a real server.

Only the target is changed (the test server listens on a free port); the
application's credentials come from the environment, as the README says.
(The grpcurl line beside it is documentation only: grpcurl is not a
dependency of the project.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_serve import clean_env, new_client, start, stop
from tests.settings_defaults import setting_default

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## gRPC in 30 seconds"
# The README speaks to a server started with the defaults.
README_TARGET = f'"127.0.0.1:{setting_default("grpc_port")}"'


def grpc_block() -> str:
    text = README.read_text()
    assert SECTION in text, f"README.md lost its {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, "the section must have exactly one ```python block"
    assert README_TARGET in blocks[0]
    assert "grpcurl" in section
    return str(blocks[0])


def test_the_readme_grpc_block_issues_and_introspects_a_token(tmp_path: Path) -> None:
    block = grpc_block()
    served = start(["--dev", "--grpc-port", "0", "--http-port", "0"], tmp_path)
    try:
        client = new_client(served, scopes=("invoices:read", "invoices:write"))
        done = subprocess.run(
            [sys.executable, "-c", block.replace(README_TARGET, f'"127.0.0.1:{served.port}"')],
            cwd=tmp_path,
            env=clean_env(M2MAUTH_CLIENT_ID=client.client_id, M2MAUTH_CLIENT_SECRET=client.secret),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        stop(served)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Bearer 3600 invoices:read",
        f"True {client.org_id} invoices:read",
    ]
