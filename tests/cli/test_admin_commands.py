"""orgs, apps, secrets and audit: JSON shapes, tables, update masks and paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from m2mauth.bootstrap import App
from m2mauth.core.models import Principal
from tests.cli.conftest import Cli

ENV = Principal(admin_key_id="ak_test", organization_id=None)


def column_starts(header: str, names: list[str]) -> list[int]:
    starts = [header.index(name) for name in names]
    assert starts == sorted(starts), header
    return starts


def assert_aligned(table: str, names: list[str]) -> list[str]:
    """Every row's cells start under their header; return the data rows."""
    header, *rows = table.splitlines()
    starts = column_starts(header, names)
    for row in rows:
        for start in starts[1:]:
            assert row[start - 2 : start] == "  ", (row, start)
            assert row[start] != " ", (row, start)
    return rows


# --- organizations ---------------------------------------------------------


def test_orgs_create_json_is_the_proto_json_mapping_with_proto_field_names(cli: Cli) -> None:
    org = cli.json("orgs", "create", "--name", "Acme", "--external-id", "acme-42")
    assert set(org) == {"id", "name", "external_id", "enabled", "create_time", "update_time"}
    assert org["id"].startswith("org_")
    assert org["name"] == "Acme"
    assert org["external_id"] == "acme-42"
    assert org["enabled"] is True
    assert org["create_time"].endswith("Z")
    assert cli.json("orgs", "get", org["id"]) == org


def test_orgs_create_quiet_prints_only_the_id_and_table_shows_every_field(cli: Cli) -> None:
    org_id = cli.ok("orgs", "create", "--name", "Acme", "-q").stdout
    assert org_id.startswith("org_")
    assert org_id.strip() == org_id.rstrip("\n")
    assert org_id.count("\n") == 1
    table = cli.ok("orgs", "get", org_id.strip()).stdout.splitlines()
    rows = dict(line.split(None, 1) for line in table)
    assert rows["id"] == org_id.strip()
    assert rows["name"] == "Acme"
    assert rows["external_id"] == "-"
    assert rows["enabled"] == "true"
    assert [line.split()[0] for line in table] == [
        "id",
        "name",
        "external_id",
        "enabled",
        "create_time",
        "update_time",
    ]
    # The value column is aligned.
    assert len({line.index(line.split()[1], len(line.split()[0])) for line in table}) == 1


def test_orgs_list_table_is_aligned_and_json_is_an_array_oldest_first(cli: Cli) -> None:
    ids = [cli.text("orgs", "create", "--name", name, "-q") for name in "ABC"]
    cli.ok("orgs", "create", "--name", "Delta Corp", "--external-id", "d-1", "--disable")
    listed = cli.json("orgs", "list")
    assert isinstance(listed, list)
    assert [o["id"] for o in listed][:3] == ids
    assert [o["name"] for o in listed] == ["A", "B", "C", "Delta Corp"]
    assert listed[3]["enabled"] is False
    rows = assert_aligned(
        cli.ok("orgs", "list").stdout, ["ID", "NAME", "EXTERNAL ID", "ENABLED", "CREATED"]
    )
    assert len(rows) == 4
    assert rows[3].split("  ")[0] == listed[3]["id"]
    assert "Delta Corp" in rows[3]
    assert "false" in rows[3]


def test_lists_page_through_everything_or_stop_at_the_limit(cli: Cli, container: App) -> None:
    # More than one page (the server's maximum page size is 100).
    # Ids sort by creation time only to the millisecond: the list order is by id.
    made = sorted(container.organizations.create(ENV, f"o{i}", "", None).id for i in range(120))
    everything = cli.json("orgs", "list")
    assert [o["id"] for o in everything] == made
    assert [o["id"] for o in cli.json("orgs", "list", "--limit", "105")] == made[:105]
    assert [o["id"] for o in cli.json("orgs", "list", "--limit", "3")] == made[:3]
    table = cli.ok("orgs", "list", "--limit", "2").stdout.splitlines()
    assert len(table) == 3  # header and two rows
    assert table[2].startswith(made[1])


def test_orgs_update_sends_only_the_flags_given(cli: Cli) -> None:
    org_id = cli.text("orgs", "create", "--name", "Acme", "--external-id", "acme-1", "-q")
    renamed = cli.json("orgs", "update", org_id, "--name", "Acme Inc.")
    assert renamed["name"] == "Acme Inc."
    assert renamed["external_id"] == "acme-1"  # not in the mask: kept
    assert renamed["enabled"] is True
    disabled = cli.json("orgs", "update", org_id, "--disable")
    assert disabled["enabled"] is False
    assert disabled["name"] == "Acme Inc."
    cleared = cli.json("orgs", "update", org_id, "--external-id", "")
    assert "external_id" not in cleared
    assert cli.ok("orgs", "get", org_id, "--field", "name").stdout == "Acme Inc.\n"


def test_orgs_delete_needs_force_while_it_has_applications(cli: Cli) -> None:
    org_id = cli.text("orgs", "create", "--name", "Acme", "-q")
    cli.ok("apps", "create", "--org", org_id, "--name", "svc")
    line = cli.fails(1, "orgs", "delete", org_id)
    assert "FAILED_PRECONDITION" in line
    assert "--force" in line
    assert cli.ok("orgs", "delete", org_id, "--force").stdout == f"deleted organization {org_id}\n"
    assert "NOT_FOUND" in cli.fails(1, "orgs", "get", org_id)
    empty = cli.text("orgs", "create", "--name", "Empty", "-q")
    assert cli.json("orgs", "delete", empty) == {}


def test_orgs_revoke_tokens_reports_the_revocation_time(cli: Cli) -> None:
    org_id = cli.text("orgs", "create", "--name", "Acme", "-q")
    before = datetime.now(UTC) - timedelta(seconds=5)
    reply = cli.json("orgs", "revoke-tokens", org_id)
    assert set(reply) == {"revoke_time"}
    assert datetime.fromisoformat(reply["revoke_time"]) >= before
    text = cli.ok("orgs", "revoke-tokens", org_id).stdout
    assert text.startswith(f"revoked the tokens of organization {org_id} issued until 20")


# --- applications ----------------------------------------------------------


def make_org(cli: Cli, name: str = "Acme") -> str:
    return cli.text("orgs", "create", "--name", name, "-q")


def test_apps_create_json_shape(cli: Cli) -> None:
    org_id = make_org(cli)
    app = cli.json(
        "apps",
        "create",
        "--org",
        org_id,
        "--name",
        "billing-sync",
        "--description",
        "nightly invoices",
        "--scope",
        "invoices:read",
        "--scope",
        "invoices:write",
        "--audience",
        "https://api.example.com",
        "--ttl",
        "15m",
    )
    assert set(app) == {
        "id",
        "client_id",
        "organization_id",
        "name",
        "description",
        "scopes",
        "audiences",
        "token_ttl_seconds",
        "enabled",
        "create_time",
        "update_time",
        "token_endpoint_auth_method",
        "etag",
    }
    # The default method is shown; the JWK Set, empty, is not.
    assert app["token_endpoint_auth_method"] == "TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET"
    assert app["id"].startswith("app_")
    assert app["client_id"].startswith("client_")
    assert app["organization_id"] == org_id
    assert app["scopes"] == ["invoices:read", "invoices:write"]
    assert app["audiences"] == ["https://api.example.com"]
    assert app["token_ttl_seconds"] == 900
    assert app["enabled"] is True
    assert cli.ok("apps", "get", app["id"], "--field", "client_id").stdout == (
        app["client_id"] + "\n"
    )
    assert cli.ok("apps", "get", app["id"], "--field", "scopes").stdout == (
        "invoices:read invoices:write\n"
    )


def test_apps_update_builds_the_mask_from_the_flags_given(cli: Cli) -> None:
    org_id = make_org(cli)
    app_id = cli.text(
        "apps",
        "create",
        *("--org", org_id, "--name", "svc", "--description", "first"),
        *("--scope", "a", "--scope", "b", "--audience", "https://x.example", "--ttl", "60"),
        "-q",
    )
    only_scopes = cli.json("apps", "update", app_id, "--scope", "c")
    assert only_scopes["scopes"] == ["c"]
    assert only_scopes["description"] == "first"
    assert only_scopes["audiences"] == ["https://x.example"]
    assert only_scopes["token_ttl_seconds"] == 60
    assert only_scopes["name"] == "svc"
    cleared = cli.json("apps", "update", app_id, "--clear-audiences", "--ttl", "1h", "--disable")
    assert "audiences" not in cleared
    assert cleared["token_ttl_seconds"] == 3600
    assert cleared["enabled"] is False
    assert cleared["scopes"] == ["c"]
    renamed = cli.json("apps", "update", app_id, "--name", "svc2", "--description", "")
    assert renamed["name"] == "svc2"
    assert "description" not in renamed
    assert renamed["enabled"] is False


def test_apps_list_filters_by_organization_and_prints_a_table(cli: Cli) -> None:
    acme, other = make_org(cli), make_org(cli, "Other")
    mine = cli.ok("apps", "create", "--org", acme, "--name", "a1", "--scope", "s1", "-q")
    cli.ok("apps", "create", "--org", other, "--name", "o1")
    listed = cli.json("apps", "list", "--org", acme)
    assert [a["id"] for a in listed] == [mine.stdout.strip()]
    assert len(cli.json("apps", "list")) == 2
    rows = assert_aligned(
        cli.ok("apps", "list", "--org", acme).stdout,
        ["ID", "CLIENT ID", "ORGANIZATION", "NAME", "SCOPES", "ENABLED", "CREATED"],
    )
    assert len(rows) == 1
    assert rows[0].startswith(mine.stdout.strip())
    assert listed[0]["client_id"] in rows[0]
    assert cli.json("apps", "list", "--limit", "1") == [cli.json("apps", "list")[0]]


def test_apps_delete_and_revoke_tokens(cli: Cli) -> None:
    app_id = cli.text("apps", "create", "--org", make_org(cli), "--name", "svc", "-q")
    assert set(cli.json("apps", "revoke-tokens", app_id)) == {"revoke_time"}
    assert cli.ok("apps", "delete", app_id).stdout == f"deleted application {app_id}\n"
    assert "NOT_FOUND" in cli.fails(1, "apps", "get", app_id)
    assert "NOT_FOUND" in cli.fails(1, "apps", "delete", app_id)


def test_empty_lists(cli: Cli) -> None:
    assert cli.json("apps", "list") == []
    result = cli.ok("apps", "list")
    assert result.stdout == ""
    assert result.stderr == "no applications\n"


# --- client secrets --------------------------------------------------------


def test_secrets_create_prints_the_secret_once_with_a_warning(cli: Cli) -> None:
    app_id = cli.text("apps", "create", "--org", make_org(cli), "--name", "svc", "-q")

    shown = cli.ok("secrets", "create", app_id)
    rows = dict(line.split(None, 1) for line in shown.stdout.splitlines())
    assert rows["secret"].startswith("m2m_cs_")
    assert rows["secret_hint"] == rows["secret"][-4:]
    assert rows["application_id"] == app_id
    assert "shown only now" in shown.stderr
    assert shown.stderr.startswith("warning: ")

    quiet = cli.ok("secrets", "create", app_id, "-q")
    assert quiet.stdout.startswith("m2m_cs_")
    assert len(quiet.stdout.splitlines()) == 1
    assert "shown only now" in quiet.stderr

    as_json = cli.json("secrets", "create", app_id, "--expires", "90d")
    assert set(as_json) == {"client_secret", "secret"}
    assert as_json["secret"].startswith("m2m_cs_")
    assert as_json["client_secret"]["secret_hint"] == as_json["secret"][-4:]
    expires = datetime.fromisoformat(as_json["client_secret"]["expire_time"])
    assert timedelta(days=89) < expires - datetime.now(UTC) < timedelta(days=91)

    listed = cli.json("secrets", "list", app_id)
    assert [s["secret_hint"] for s in listed] == [
        rows["secret_hint"],
        quiet.stdout.strip()[-4:],
        as_json["secret"][-4:],
    ]
    assert all("secret" not in s for s in listed)
    table = cli.ok("secrets", "list", app_id).stdout
    assert "m2m_cs_" not in table
    assert_aligned(table, ["ID", "HINT", "CREATED", "LAST USED", "EXPIRES"])


def test_secrets_revoke(cli: Cli) -> None:
    app_id = cli.text("apps", "create", "--org", make_org(cli), "--name", "svc", "-q")
    secret = cli.json("secrets", "create", app_id)["client_secret"]
    done = cli.ok("secrets", "revoke", app_id, secret["id"]).stdout
    assert done == f"revoked client secret {secret['id']} of application {app_id}\n"
    assert cli.json("secrets", "list", app_id) == []
    assert "NOT_FOUND" in cli.fails(1, "secrets", "revoke", app_id, secret["id"])


# --- audit -----------------------------------------------------------------


def test_audit_list_filters_newest_first(cli: Cli) -> None:
    acme, other = make_org(cli), make_org(cli, "Other")
    app_id = cli.text("apps", "create", "--org", acme, "--name", "svc", "-q")
    cli.ok("secrets", "create", app_id)

    events = cli.json("audit", "list", "--org", acme)
    assert [e["action"] for e in events] == [
        "client_secret.create",
        "application.create",
        "organization.create",
    ]
    assert {"id", "time", "actor", "action", "organization_id", "target"} <= set(events[0])
    assert all(e["organization_id"] == acme for e in events)
    assert [e["action"] for e in cli.json("audit", "list", "--app", app_id)] == [
        "client_secret.create",
        "application.create",
    ]
    assert len(cli.json("audit", "list", "--limit", "2")) == 2
    assert cli.json("audit", "list", "--org", other)[0]["target"] == other
    assert cli.json("audit", "list", "--since", "2099-01-01T00:00:00Z") == []
    assert cli.json("audit", "list", "--org", acme, "--until", "2000-01-01") == []
    assert len(cli.json("audit", "list", "--org", acme, "--since", "1h")) == 3
    rows = assert_aligned(
        cli.ok("audit", "list", "--org", acme).stdout,
        ["TIME", "ACTOR", "ACTION", "ORGANIZATION", "APPLICATION", "TARGET", "DETAILS"],
    )
    assert "client_secret.create" in rows[0]
