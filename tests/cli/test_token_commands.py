"""token, introspect, revoke and keys: the token service from the terminal.

These need TokenService and KeyService on the test server; until they are
registered there, every call here answers UNIMPLEMENTED and these tests fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.cli.conftest import Cli


@dataclass
class App:
    id: str
    org_id: str
    client_id: str
    secret: str

    def env(self) -> dict[str, str]:
        return {"M2MAUTH_CLIENT_ID": self.client_id, "M2MAUTH_CLIENT_SECRET": self.secret}


@pytest.fixture
def app(cli: Cli) -> App:
    org_id = cli.text("orgs", "create", "--name", "Acme", "-q")
    made = cli.json(
        "apps",
        "create",
        *("--org", org_id, "--name", "billing-sync"),
        *("--scope", "invoices:read", "--scope", "invoices:write"),
    )
    secret = cli.text("secrets", "create", made["id"], "-q")
    return App(made["id"], org_id, made["client_id"], secret)


def test_token_prints_just_the_access_token(cli: Cli, app: App) -> None:
    result = cli.ok("token", **app.env())
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    assert token.count(".") == 2  # a JWT: header.payload.signature
    # The flags do the same as the variables.
    flagged = cli.ok("token", "--client-id", app.client_id, "--client-secret", app.secret)
    assert flagged.stdout.count(".") == 2


def test_token_json_is_the_whole_response(cli: Cli, app: App) -> None:
    reply = cli.json("token", "--scope", "invoices:read", **app.env())
    assert set(reply) == {"access_token", "token_type", "expires_in", "scope"}
    assert reply["token_type"] == "Bearer"
    assert int(reply["expires_in"]) > 0  # int64: a string in the proto JSON mapping
    assert reply["scope"] == "invoices:read"


def test_token_errors(cli: Cli, app: App) -> None:
    wrong = {**app.env(), "M2MAUTH_CLIENT_SECRET": "m2m_cs_" + "x" * 43}
    line = cli.fails(1, "token", **wrong)
    assert "(INVALID_CLIENT)" in line
    assert "M2MAUTH_CLIENT_SECRET" in line
    line = cli.fails(1, "token", "--scope", "payroll:write", **app.env())
    assert "(INVALID_SCOPE)" in line


def test_introspect_with_the_admin_key_and_as_the_client(cli: Cli, app: App) -> None:
    token = cli.text("token", "--scope", "invoices:read", **app.env())
    claims = cli.json("introspect", token)
    assert claims["active"] is True
    assert claims["client_id"] == app.client_id
    assert claims["sub"] == app.client_id
    assert claims["org_id"] == app.org_id
    assert claims["scope"] == "invoices:read"
    assert claims["token_type"] == "Bearer"
    assert {"exp", "iat", "iss", "jti", "aud"} <= set(claims)
    as_client = cli.json("introspect", token, M2MAUTH_ADMIN_KEY="", **app.env())
    assert as_client == claims
    table = dict(line.split(None, 1) for line in cli.ok("introspect", token).stdout.splitlines())
    assert table["active"] == "true"
    assert table["org_id"] == app.org_id
    assert cli.ok("introspect", token, "--field", "org_id").stdout == app.org_id + "\n"
    # "-" reads the token from stdin.
    assert cli.ok("introspect", "-", "--field", "active", stdin=token + "\n").stdout == "true\n"


def test_introspect_needs_some_credentials(cli: Cli) -> None:
    assert "no admin key" in cli.fails(2, "introspect", "abc", M2MAUTH_ADMIN_KEY="")


def test_revoke_then_introspect_says_only_inactive(cli: Cli, app: App) -> None:
    token = cli.text("token", **app.env())
    assert cli.ok("revoke", token).stdout == "token revoked\n"
    assert cli.json("introspect", token) == {"active": False}
    assert cli.ok("introspect", token).stdout.split() == ["active", "false"]
    # The application may revoke its own tokens; revoking again is fine (RFC 7009).
    other = cli.text("token", **app.env())
    assert cli.json("revoke", other, M2MAUTH_ADMIN_KEY="", **app.env()) == {}
    assert cli.json("introspect", other) == {"active": False}
    assert cli.ok("revoke", other).exit_code == 0


def test_app_revoke_tokens_ends_every_token_so_far(cli: Cli, app: App) -> None:
    token = cli.text("token", **app.env())
    cli.ok("apps", "revoke-tokens", app.id)
    assert cli.json("introspect", token) == {"active": False}


def test_keys_list_and_rotate(cli: Cli, app: App) -> None:
    cli.ok("token", **app.env())  # signing keys exist once the server signs
    keys = cli.json("keys", "list")
    states = {k["state"] for k in keys}
    assert {"SIGNING_KEY_STATE_CURRENT", "SIGNING_KEY_STATE_NEXT"} <= states
    assert {"id", "algorithm", "state", "create_time", "public_key"} <= set(keys[0])
    assert "d" not in keys[0]["public_key"]  # public members only
    next_id = next(k["id"] for k in keys if k["state"] == "SIGNING_KEY_STATE_NEXT")

    current_id = next(k["id"] for k in keys if k["state"] == "SIGNING_KEY_STATE_CURRENT")
    # Just published, the NEXT key may not be in verifiers' cached JWKS yet: a
    # rotation waits for it, and says until when.
    scheduled = cli.ok("keys", "rotate").stdout.splitlines()[0]
    assert scheduled.startswith(f"Rotation scheduled: {next_id} becomes CURRENT at ")
    assert f"{current_id} signs until then" in scheduled
    assert cli.json("keys", "rotate")["next_key"]["activate_time"]  # the same schedule
    assert [k["id"] for k in cli.json("keys", "list") if k["state"].endswith("CURRENT")] == [
        current_id
    ]

    rotated = cli.json("keys", "rotate", "--now")
    assert set(rotated) == {"current_key", "next_key"}
    assert rotated["current_key"]["id"] == next_id
    assert rotated["next_key"]["state"] == "SIGNING_KEY_STATE_NEXT"

    # Rotating again, the table shows every published key: the keys that signed
    # the earlier tokens (the first CURRENT, then the key the JSON rotation made
    # CURRENT) as PREVIOUS, beside the new CURRENT and NEXT.
    shown = cli.ok("keys", "rotate", "--now").stdout.splitlines()
    assert shown[0] == f"Rotated: {rotated['next_key']['id']} signs from now on."
    shown = shown[1:]
    assert shown[0].split()[:3] == ["ID", "ALGORITHM", "STATE"]
    rows = [(line.split()[2], line.split()[0]) for line in shown[1:]]
    assert [state for state, _ in rows] == ["NEXT", "CURRENT", "PREVIOUS", "PREVIOUS"]
    assert rows[1][1] == rotated["next_key"]["id"]
    assert {key_id for _, key_id in rows[2:]} == {next_id, current_id}

    table = cli.ok("keys", "list").stdout.splitlines()
    assert table[0].split() == [
        "ID",
        "ALGORITHM",
        "STATE",
        "CREATED",
        "ACTIVATED",
        "DEACTIVATED",
        "RETIRES",
    ]
    states_in_table = [line.split()[2] for line in table[1:]]
    assert states_in_table[:3] == ["NEXT", "CURRENT", "PREVIOUS"]
    assert len(cli.json("keys", "list", "--limit", "1")) == 1
    # A token issued after the rotation still introspects as active.
    token = cli.text("token", **app.env())
    assert cli.json("introspect", token)["active"] is True
