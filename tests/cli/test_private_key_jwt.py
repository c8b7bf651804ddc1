"""No secret: `m2mauth apps create/update --auth-method private_key_jwt --jwks-file`
and `m2mauth token --private-key`, against a real server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest

from m2mauth.bootstrap import App
from m2mauth.cli_support.channel import Session
from m2mauth.core.applications import ApplicationFields
from m2mauth.core.models import FederatedCredential, Principal, TokenEndpointAuthMethod
from tests.assertions import ClientKey, jwks_of, new_key
from tests.cli.conftest import Cli

PRIVATE_KEY_JWT = "TOKEN_ENDPOINT_AUTH_METHOD_PRIVATE_KEY_JWT"
CLIENT_SECRET = "TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET"


def write_key(tmp_path: Path, key: ClientKey) -> tuple[Path, Path]:
    pem = tmp_path / f"{key.kid}.pem"
    pem.write_bytes(key.private_pem())
    jwks = tmp_path / f"{key.kid}.jwks.json"
    jwks.write_text(jwks_of(key))
    return pem, jwks


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_a_keyed_application_gets_tokens_with_its_private_key_file(
    cli: Cli, container: App, tmp_path: Path, alg: str
) -> None:
    key = new_key(alg)
    pem, jwks = write_key(tmp_path, key)
    org_id = cli.text("orgs", "create", "--name", "Acme", "-q")
    app = cli.json(
        "apps",
        "create",
        *("--org", org_id, "--name", "keyed", "--scope", "invoices:read"),
        *("--auth-method", "private_key_jwt", "--jwks-file", str(jwks)),
    )
    assert app["token_endpoint_auth_method"] == PRIVATE_KEY_JWT
    assert json.loads(app["jwks"])["keys"][0]["kid"] == key.kid
    issuer = container.tokens.policy.issuer
    flags = ("--private-key", str(pem), "--kid", key.kid, "--assertion-audience", issuer)
    token = cli.text("token", "--client-id", app["client_id"], *flags)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["client_id"], claims["org_id"]) == (app["client_id"], org_id)
    # Each call signs a new assertion (a new jti): a second token works too.
    assert cli.text("token", "--client-id", app["client_id"], *flags) != token


def test_apps_update_switches_the_method_both_ways(
    cli: Cli, container: App, tmp_path: Path
) -> None:
    key = new_key("ES256")
    pem, jwks = write_key(tmp_path, key)
    org_id = cli.text("orgs", "create", "--name", "Acme", "-q")
    app_id = cli.text("apps", "create", "--org", org_id, "--name", "svc", "-q")
    keyed = cli.json(
        "apps", "update", app_id, "--auth-method", "private_key_jwt", "--jwks-file", str(jwks)
    )
    assert keyed["token_endpoint_auth_method"] == PRIVATE_KEY_JWT
    assert keyed["name"] == "svc"
    back = cli.json("apps", "update", app_id, "--auth-method", "client_secret")
    assert back["token_endpoint_auth_method"] == CLIENT_SECRET
    assert "jwks" not in back
    line = cli.fails(
        1,
        "token",
        *("--client-id", keyed["client_id"], "--private-key", str(pem)),
        *("--assertion-audience", container.tokens.policy.issuer),
    )
    assert "client authentication failed" in line


def test_a_private_key_in_the_jwks_file_is_refused_without_being_shown(
    cli: Cli, tmp_path: Path
) -> None:
    key = new_key("ES256")
    leaked = {**key.public_jwk, "d": "c2VjcmV0LXByaXZhdGUtc2NhbGFyLWJ5dGVz"}
    path = tmp_path / "oops.json"
    path.write_text(json.dumps({"keys": [leaked]}))
    org_id = cli.text("orgs", "create", "--name", "Acme", "-q")
    line = cli.fails(
        1,
        "apps",
        "create",
        *("--org", org_id, "--name", "keyed", "--auth-method", "private_key_jwt"),
        *("--jwks-file", str(path)),
    )
    assert "application.jwks" in line
    assert leaked["d"] not in line


def test_token_with_a_key_needs_its_pieces_and_never_shows_the_key(
    cli: Cli, tmp_path: Path
) -> None:
    key = new_key("ES256")
    pem, _ = write_key(tmp_path, key)
    client_id = "client_01JAAAAAAAAAAAAAAAAAAAAAAA"
    audience = ("--assertion-audience", "https://auth.example.test")
    both = cli.fails(
        2,
        "token",
        *("--client-id", client_id, "--client-secret", "m2m_cs_x", "--private-key", str(pem)),
        *audience,
    )
    assert "not both" in both
    no_aud = cli.fails(2, "token", "--client-id", client_id, "--private-key", str(pem))
    assert "--assertion-audience" in no_aud
    no_id = cli.fails(2, "token", "--private-key", str(pem), *audience)
    assert "M2MAUTH_CLIENT_ID" in no_id
    garbage = tmp_path / "not-a-key.pem"
    garbage.write_text(
        "-----BEGIN PRIVATE KEY-----\nsecret-looking-bytes\n-----END PRIVATE KEY-----\n"
    )
    bad = cli.fails(2, "token", "--client-id", client_id, "--private-key", str(garbage), *audience)
    assert "unencrypted PEM private key" in bad
    assert "secret-looking-bytes" not in bad


def test_apps_take_a_jwks_uri_instead_of_a_file(cli: Cli, tmp_path: Path) -> None:
    _, jwks = write_key(tmp_path, new_key("ES256"))
    org_id = cli.text("orgs", "create", "--name", "Acme", "-q")
    uri = "https://partner.example.test/.well-known/jwks.json"
    app = cli.json(
        "apps",
        "create",
        *("--org", org_id, "--name", "keyed", "--auth-method", "private_key_jwt"),
        *("--jwks-uri", uri),
    )
    assert (app["token_endpoint_auth_method"], app["jwks_uri"]) == (PRIVATE_KEY_JWT, uri)
    assert "jwks" not in app
    # Moving to an inline set clears the URI in the same change.
    inline = cli.json("apps", "update", app["id"], "--jwks-file", str(jwks))
    assert "jwks_uri" not in inline
    assert json.loads(inline["jwks"])["keys"]
    both = cli.fails(2, "apps", "update", app["id"], "--jwks-file", str(jwks), "--jwks-uri", uri)
    assert "contradict" in both
    plain = cli.fails(1, "apps", "update", app["id"], "--jwks-uri", "http://partner.example.test/k")
    assert "application.jwks_uri" in plain


def test_apps_federation_add_list_remove(cli: Cli) -> None:
    org_id = cli.text("orgs", "create", "--name", "Acme", "-q")
    app_id = cli.text("apps", "create", "--org", org_id, "--name", "workload", "-q")
    github = (
        *("--issuer", "https://token.actions.githubusercontent.com"),
        *("--subject", "repo:acme/billing:*", "--audience", "m2mauth"),
    )
    # Not federated yet: switching must be asked for.
    line = cli.fails(2, "apps", "federation", "add", app_id, *github)
    assert "--switch-method" in line
    app = cli.json("apps", "federation", "add", app_id, *github, "--switch-method")
    assert app["token_endpoint_auth_method"] == "TOKEN_ENDPOINT_AUTH_METHOD_FEDERATED"
    kubernetes = (
        *("--issuer", "https://oidc.eks.example.com"),
        *("--subject", "system:serviceaccount:billing:invoicer", "--audience", "m2mauth"),
    )
    cli.ok("apps", "federation", "add", app_id, *kubernetes)
    listed = cli.json("apps", "federation", "list", app_id)
    assert [c["subject"] for c in listed] == [
        "repo:acme/billing:*",
        "system:serviceaccount:billing:invoicer",
    ]
    table = cli.ok("apps", "federation", "list", app_id).stdout
    assert table.splitlines()[0].split() == ["ISSUER", "SUBJECT", "AUDIENCE"]
    left = cli.json("apps", "federation", "remove", app_id, *github)
    assert [c["subject"] for c in left["federated_credentials"]] == [
        "system:serviceaccount:billing:invoicer"
    ]
    assert "no such" in cli.fails(2, "apps", "federation", "remove", app_id, *github)
    # The server refuses a lone "*" and names the field.
    bad = cli.fails(
        1,
        "apps",
        "federation",
        "add",
        app_id,
        *("--issuer", "https://oidc.example.com", "--subject", "*", "--audience", "m2mauth"),
    )
    assert "federated_credentials[1].subject" in bad
    # Back to secrets: the credentials go in the same change.
    back = cli.json("apps", "update", app_id, "--auth-method", "client_secret")
    assert back["token_endpoint_auth_method"] == CLIENT_SECRET
    assert "federated_credentials" not in back


def test_federation_add_keeps_a_credential_added_meanwhile(
    cli: Cli, container: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI reads the list, adds to it and writes it back: another admin's
    addition between the read and the write must survive (the write carries the
    etag it read with; refused, the CLI reads and adds again)."""
    org_id = cli.text("orgs", "create", "--name", "Acme", "-q")
    app_id = cli.text("apps", "create", "--org", org_id, "--name", "workload", "-q")
    meanwhile = FederatedCredential("https://oidc.eks.example.com", "system:sa", "m2mauth")
    attempts: list[str] = []
    conditional = Session.call_unless_stale

    def another_admin_first(self: Session, method: Any, request: Any) -> Any:
        attempts.append(request.application.etag)
        if len(attempts) == 1:  # between the CLI's read and its write
            container.applications.update(
                Principal(admin_key_id="ak_other", organization_id=None),
                app_id,
                ["token_endpoint_auth_method", "federated_credentials"],
                ApplicationFields(
                    token_endpoint_auth_method=TokenEndpointAuthMethod.FEDERATED,
                    federated_credentials=(meanwhile,),
                ),
            )
        return conditional(self, method, request)

    monkeypatch.setattr(Session, "call_unless_stale", another_admin_first)
    github = (
        *("--issuer", "https://token.actions.githubusercontent.com"),
        *("--subject", "repo:acme/billing:*", "--audience", "m2mauth"),
    )
    app = cli.json("apps", "federation", "add", app_id, *github, "--switch-method")
    assert [c["subject"] for c in app["federated_credentials"]] == [
        "system:sa",
        "repo:acme/billing:*",
    ]
    # Refused once (stale etag), then made on what the other admin left.
    assert len(attempts) == 2
    assert attempts[0] != attempts[1]
    assert all(attempts)
