"""`m2mauth serve` answers OAuth over HTTP, and `serve-http --upstream` does the same
from an edge process that holds no database and no keys. Driven by curl, as the
README shows it."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from m2mauth.verify import TokenVerifier
from tests.e2e.test_serve import M2MAUTH, clean_env, new_client, start, stop

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def curl(*args: str) -> tuple[int, dict[str, object]]:
    """Run curl; return (HTTP status, JSON body)."""
    done = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body) if body else {}


EDGE_PORTS_0 = ("--http-port", "0", "--metrics-port", "0")


def start_edge(upstream: str, cwd: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    # No database URL and no root key in its environment: it must not need them.
    process = subprocess.Popen(
        [*M2MAUTH, "serve-http", "--upstream", upstream, *EDGE_PORTS_0, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if m := re.search(r"OAuth over HTTP on (https?://[^\s,]+)", line):
            return process, m.group(1)
    process.kill()
    raise AssertionError(
        f"serve-http did not start: {process.stderr.read() if process.stderr else ''}"
    )


def test_curl_token_from_serve_and_from_an_edge_shim(tmp_path: Path) -> None:
    served = start(["--dev", "--grpc-port", "0", "--http-port", "0"], tmp_path)
    try:
        assert served.admin_key
        assert served.http_url
        client = new_client(served, scopes=("invoices:read",))
        org_id = client.org_id
        # The README's line, verbatim apart from the values.
        status, body = curl(
            "-u",
            f"{client.client_id}:{client.secret}",
            "-d",
            "grant_type=client_credentials",
            f"{served.http_url}/oauth2/token",
        )
        assert status == 200, body
        # The README's verify snippet accepts it.
        verifier = TokenVerifier(
            issuer=served.http_url,
            audience=served.http_url,
            jwks_url=f"{served.http_url}/oauth2/jwks",
        )
        token = str(body["access_token"])
        verified = verifier.verify(token)
        assert verified.org_id == org_id
        assert verified.scopes == frozenset({"invoices:read"})

        edge, edge_url = start_edge(f"127.0.0.1:{served.port}", tmp_path)
        try:
            status, body = curl(
                "-u",
                f"{client.client_id}:{client.secret}",
                "-d",
                "grant_type=client_credentials",
                f"{edge_url}/oauth2/token",
            )
            assert status == 200, body
            assert verifier.verify(str(body["access_token"])).org_id == org_id
            # Errors cross the edge unchanged: RFC 6749 section 5.2.
            status, body = curl(
                "-u", f"{client.client_id}:wrong", "-d", "grant_type=client_credentials",
                f"{edge_url}/oauth2/token",
            )  # fmt: skip
            assert (status, body["error"]) == (401, "invalid_client")
            status, body = curl(
                "-u",
                f"{client.client_id}:{client.secret}",
                "-d",
                f"token={token}",
                f"{edge_url}/oauth2/introspection",
            )
            assert status == 200
            assert body["active"] is True
            assert body["org_id"] == org_id
            # One issuer: the edge advertises the tokens' iss (the core's), its own
            # endpoints, and says in its log that its --issuer disagrees.
            status, metadata = curl(f"{edge_url}/.well-known/oauth-authorization-server")
            assert status == 200, metadata
            assert metadata["issuer"] == served.http_url == verified.claims["iss"]
            assert metadata["token_endpoint"] == f"{edge_url}/oauth2/token"
        finally:
            edge.send_signal(signal.SIGTERM)
            assert edge.wait(timeout=30) == 0
        edge_log = edge.stderr.read() if edge.stderr else ""
        assert f"give it --issuer {served.http_url}" in edge_log, edge_log
    finally:
        code, stderr = stop(served)
    assert code == 0, stderr


def test_edge_says_503_when_its_upstream_is_down(tmp_path: Path) -> None:
    edge, url = start_edge("127.0.0.1:1", tmp_path)
    try:
        status, body = curl(
            "-u", "client_x:secret", "-d", "grant_type=client_credentials", f"{url}/oauth2/token"
        )
        assert (status, body["error"]) == (503, "temporarily_unavailable")
        ready = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{url}/readyz"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert ready.stdout == "503"
    finally:
        edge.send_signal(signal.SIGTERM)
        assert edge.wait(timeout=30) == 0
