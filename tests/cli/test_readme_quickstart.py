"""The README's "Quick start from the terminal", run line by line against a real server.

The commands are read from the README itself, so the README cannot drift: a
renamed flag or a changed output breaks this test. They run, exactly as
written, in one bash process (so the variables they set carry over), with
the venv's ``m2mauth`` first on PATH, against ``m2mauth serve --dev`` in a
temporary directory, whose printed admin key is exported as the README says.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from m2mauth.verify import TokenVerifier
from tests.e2e.test_serve import clean_env, start, stop
from tests.settings_defaults import setting_default

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Quick start from the terminal"


def quickstart_commands() -> list[str]:
    text = README.read_text()
    assert SECTION in text, f"README.md lost its {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, "the quick start must be exactly one ```sh block"
    return [line for line in blocks[0].splitlines() if line.strip()]


def test_the_quickstart_block_covers_the_issue() -> None:
    commands = " ".join(quickstart_commands())
    for step in (
        "m2mauth orgs create",
        "m2mauth apps create",
        "--scope",
        "m2mauth secrets create",
        "m2mauth token",
        "curl --fail-with-body",
        "grant_type=client_credentials",
        "m2mauth introspect",
        "m2mauth keys rotate",
        "m2mauth revoke",
    ):
        assert step in commands, step


# The README speaks to a server started with the defaults.
README_HTTP = f"http://127.0.0.1:{setting_default('http_port')}"


def test_every_quickstart_line_succeeds_against_a_real_server(tmp_path: Path) -> None:
    commands = quickstart_commands()
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "m2mauth").exists(), f"no m2mauth script in {venv_bin}"
    rc_file = tmp_path / "exit-codes"
    # After each README line, record its exit status ($? of that very line).
    script = "set -u\n" + "".join(
        f'{line}\nprintf "%s %s\\n" {i} "$?" >> {shlex.quote(str(rc_file))}\n'
        for i, line in enumerate(commands)
    )

    served = start(["--dev", "--grpc-port", "0", "--http-port", "0"], tmp_path)
    # The server in the test listens on a free port, not the README's default.
    script = script.replace(README_HTTP, served.http_url)
    try:
        assert served.admin_key, served.stdout
        env = clean_env(
            PATH=f"{venv_bin}:{clean_env().get('PATH', '')}",
            M2MAUTH_SERVER=f"127.0.0.1:{served.port}",
            M2MAUTH_ADMIN_KEY=served.admin_key,
        )
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # The curl line got a token that the README's verify snippet accepts.
        match = re.search(r'^\{"access_token":"([^"]+)"', done.stdout, re.MULTILINE)
        assert match, done.stdout
        verifier = TokenVerifier(
            issuer=served.http_url,
            audience=served.http_url,
            jwks_url=f"{served.http_url}/oauth2/jwks",
        )
        assert verifier.verify(match.group(1)).scopes == {"invoices:read", "invoices:write"}
    finally:
        stop(served)

    codes = (
        dict(line.split() for line in rc_file.read_text().splitlines()) if rc_file.exists() else {}
    )
    for i, line in enumerate(commands):
        assert codes.get(str(i)) == "0", (
            f"README line {line!r} exited {codes.get(str(i), 'never ran')}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    assert "Traceback" not in done.stderr
    # The last introspection, after the revocation, says the token is inactive.
    assert re.search(r"^active\s+true$", done.stdout, re.MULTILINE), done.stdout
    assert re.search(r"^active\s+false$", done.stdout, re.MULTILINE), done.stdout
    assert "shown only now" in done.stderr
