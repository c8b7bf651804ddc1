"""admin-keys and apps usage: the commands an operator uses for least privilege."""

from __future__ import annotations

from m2mauth.bootstrap import App
from m2mauth.core.applications import ApplicationFields
from m2mauth.core.models import Principal
from tests.cli.conftest import Cli
from tests.token_requests import secret_request

ENV = Principal(admin_key_id="ak_test", organization_id=None)


def test_an_admin_key_lifecycle_from_the_command_line(cli: Cli) -> None:
    org = cli.text("orgs", "create", "--name", "Acme", "-q")
    key = cli.text(
        "admin-keys", "create", "--name", "billing-api", "--organization", org,
        "--role", "token-verifier", "--expires-in", "90d", "-q",
    )  # fmt: skip
    assert key.startswith("m2m_ak_")
    assert "\n" not in key  # -q prints only the key

    [listed] = cli.json("admin-keys", "list", "--organization", org)
    assert listed["name"] == "billing-api"
    assert listed["role"] == "ADMIN_KEY_ROLE_TOKEN_VERIFIER"
    assert listed["organization_id"] == org
    assert listed["key_hint"] == key[-4:]
    assert "expire_time" in listed
    assert key not in str(listed)
    assert cli.json("admin-keys", "get", listed["id"])["id"] == listed["id"]

    # The verifier key may not manage anything: PERMISSION_DENIED names the permission.
    line = cli.fails(1, "apps", "list", M2MAUTH_ADMIN_KEY=key)
    assert "applications.read" in line

    cli.ok("admin-keys", "revoke", listed["id"])
    line = cli.fails(1, "apps", "list", M2MAUTH_ADMIN_KEY=key)
    assert "not valid (revoked)" in line
    assert cli.json("admin-keys", "list", "--organization", org) == []
    [shown] = cli.json("admin-keys", "list", "--organization", org, "--show-revoked")
    assert "revoke_time" in shown


def test_audit_filters_and_usage_from_the_command_line(cli: Cli, container: App) -> None:
    org = container.organizations.create(ENV, "Acme", "", None)
    app = container.applications.create(ENV, org.id, ApplicationFields(name="svc"))
    _, secret = container.applications.create_secret(ENV, app.id, None)
    for _ in range(3):
        container.tokens.issue_token(secret_request(app.client_id, secret))
    container.tokens.flush()

    usage = cli.json("apps", "usage", app.id, "--days", "7")
    [today] = usage["daily_tokens"]
    assert today["tokens_issued"] == "3"  # int64 in the proto3 JSON mapping
    assert "last_used_time" in usage
    assert "last used: 20" in cli.text("apps", "usage", app.id)

    created = cli.json("audit", "list", "--action", "application.create")
    assert [e["target"] for e in created] == [app.id]
    assert all(e["action"] == "application.create" for e in created)
    assert cli.json("audit", "list", "--actor", "ak_nobody") == []
