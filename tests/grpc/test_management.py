"""The management plane over real gRPC: CRUD, validation, tenancy, paging, audit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from m2mauth.bootstrap import App
from m2mauth.v1 import admin_key_service_pb2 as ak_pb
from m2mauth.v1 import (
    application_service_pb2 as app_pb,
)
from m2mauth.v1 import (
    audit_service_pb2 as audit_pb,
)
from m2mauth.v1 import (
    organization_service_pb2 as org_pb,
)
from m2mauth.v1 import resources_pb2 as res
from tests.grpc.conftest import Stubs, bearer
from tests.grpc.rich_errors import RichError, rich_error


def fails(call: Callable[..., Any], *args: Any, **kwargs: Any) -> RichError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return rich_error(info.value)


def create_org(stubs: Stubs, key: str, name: str = "Acme", **fields: Any) -> res.Organization:
    org: res.Organization = stubs.orgs.CreateOrganization(
        org_pb.CreateOrganizationRequest(organization=res.Organization(name=name, **fields)),
        metadata=bearer(key),
    ).organization
    return org


def create_app(stubs: Stubs, key: str, org_id: str, **fields: Any) -> res.Application:
    fields.setdefault("name", "billing-sync")
    app: res.Application = stubs.apps.CreateApplication(
        app_pb.CreateApplicationRequest(
            application=res.Application(organization_id=org_id, **fields)
        ),
        metadata=bearer(key),
    ).application
    return app


# --- authentication ---------------------------------------------------------


def test_management_calls_need_an_admin_key(stubs: Stubs, admin_key: str) -> None:
    request = org_pb.ListOrganizationsRequest()
    missing = fails(stubs.orgs.ListOrganizations, request)
    assert missing.code == grpc.StatusCode.UNAUTHENTICATED
    assert (missing.reason, missing.domain) == ("ADMIN_KEY_INVALID", "m2mauth")
    for bad in (
        "m2m_ak_" + "x" * 43,
        "not-a-key",
        admin_key + "x",
        "y" * 4_000,
    ):  # under gRPC's 8 KiB metadata soft limit
        err = fails(stubs.orgs.ListOrganizations, request, metadata=bearer(bad))
        assert err.code == grpc.StatusCode.UNAUTHENTICATED
    basic = [("authorization", f"Basic {admin_key}")]
    assert fails(stubs.orgs.ListOrganizations, request, metadata=basic).reason == (
        "ADMIN_KEY_INVALID"
    )
    assert stubs.orgs.ListOrganizations(request, metadata=bearer(admin_key)) is not None


def test_admin_keys_are_stored_hashed(container: App, admin_key: str, store: Any) -> None:
    principal = container.admin_keys.authenticate(admin_key)
    with store.unit_of_work() as uow:
        stored = uow.get_admin_key_by_hash(container.hasher.hash(admin_key))
    assert stored is not None
    assert stored.id == principal.admin_key_id
    assert admin_key.encode() not in stored.key_hash
    assert len(stored.key_hash) == 32


# --- organizations ----------------------------------------------------------


def test_organization_lifecycle(stubs: Stubs, admin_key: str) -> None:
    org = create_org(stubs, admin_key, "Acme Corp", external_id="crm-42")
    assert org.id.startswith("org_")
    assert len(org.id) == 30
    assert org.enabled is True
    assert org.create_time.seconds > 0
    assert org.update_time == org.create_time

    got = stubs.orgs.GetOrganization(
        org_pb.GetOrganizationRequest(id=org.id), metadata=bearer(admin_key)
    ).organization
    assert got == org

    updated = stubs.orgs.UpdateOrganization(
        org_pb.UpdateOrganizationRequest(
            organization=res.Organization(id=org.id, name="Acme Inc", enabled=False),
            update_mask=field_mask_pb2.FieldMask(paths=["name", "enabled"]),
        ),
        metadata=bearer(admin_key),
    ).organization
    assert (updated.name, updated.enabled, updated.external_id) == ("Acme Inc", False, "crm-42")
    assert updated.update_time.ToDatetime() >= org.update_time.ToDatetime()

    stubs.orgs.DeleteOrganization(
        org_pb.DeleteOrganizationRequest(id=org.id), metadata=bearer(admin_key)
    )
    err = fails(
        stubs.orgs.GetOrganization,
        org_pb.GetOrganizationRequest(id=org.id),
        metadata=bearer(admin_key),
    )
    assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")


def test_organization_bad_input_names_the_field(stubs: Stubs, admin_key: str) -> None:
    err = fails(create_org, stubs, admin_key, "   ")
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.reason, err.fields) == ("INVALID_FIELD", ["organization.name"])
    err = fails(create_org, stubs, admin_key, "x" * 201)
    assert err.fields == ["organization.name"]

    create_org(stubs, admin_key, "First", external_id="dup")
    err = fails(create_org, stubs, admin_key, "Second", external_id="dup")
    assert (err.code, err.reason) == (grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS")
    # Organizations without an external id never clash.
    create_org(stubs, admin_key, "No external id 1")
    create_org(stubs, admin_key, "No external id 2")


def test_update_mask_is_required_and_checked(stubs: Stubs, admin_key: str) -> None:
    org = create_org(stubs, admin_key)
    for paths, field in (([], "update_mask"), (["id"], "update_mask"), (["bogus"], "update_mask")):
        err = fails(
            stubs.orgs.UpdateOrganization,
            org_pb.UpdateOrganizationRequest(
                organization=res.Organization(id=org.id, name="New"),
                update_mask=field_mask_pb2.FieldMask(paths=paths),
            ),
            metadata=bearer(admin_key),
        )
        assert (err.code, err.fields) == (grpc.StatusCode.INVALID_ARGUMENT, [field])
    app = create_app(stubs, admin_key, org.id)
    err = fails(
        stubs.apps.UpdateApplication,
        app_pb.UpdateApplicationRequest(
            application=res.Application(id=app.id, organization_id="org_other"),
            update_mask=field_mask_pb2.FieldMask(paths=["organization_id"]),
        ),
        metadata=bearer(admin_key),
    )
    assert err.fields == ["update_mask"]


def test_unknown_and_malformed_ids_are_not_found(stubs: Stubs, admin_key: str) -> None:
    for bad in ("org_01ARZ3NDEKTSV4RRFFQ69G5FAV", "nonsense", "app_01ARZ3NDEKTSV4RRFFQ69G5FAV"):
        err = fails(
            stubs.orgs.GetOrganization,
            org_pb.GetOrganizationRequest(id=bad),
            metadata=bearer(admin_key),
        )
        assert err.code == grpc.StatusCode.NOT_FOUND
    err = fails(
        stubs.orgs.GetOrganization, org_pb.GetOrganizationRequest(), metadata=bearer(admin_key)
    )
    assert (err.code, err.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["id"])


def test_delete_organization_with_applications_needs_force(stubs: Stubs, admin_key: str) -> None:
    org = create_org(stubs, admin_key)
    app = create_app(stubs, admin_key, org.id)
    err = fails(
        stubs.orgs.DeleteOrganization,
        org_pb.DeleteOrganizationRequest(id=org.id),
        metadata=bearer(admin_key),
    )
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION")
    # Nothing was deleted by the refused call.
    stubs.apps.GetApplication(app_pb.GetApplicationRequest(id=app.id), metadata=bearer(admin_key))
    stubs.orgs.DeleteOrganization(
        org_pb.DeleteOrganizationRequest(id=org.id, force=True), metadata=bearer(admin_key)
    )
    err = fails(
        stubs.apps.GetApplication,
        app_pb.GetApplicationRequest(id=app.id),
        metadata=bearer(admin_key),
    )
    assert err.code == grpc.StatusCode.NOT_FOUND


# --- applications and secrets ------------------------------------------------


def test_application_lifecycle(stubs: Stubs, admin_key: str) -> None:
    org = create_org(stubs, admin_key)
    app = create_app(
        stubs,
        admin_key,
        org.id,
        name="billing-sync",
        description="syncs invoices",
        scopes=["invoices:read", "invoices:write"],
        audiences=["https://api.example.com"],
        token_ttl_seconds=600,
    )
    assert app.id.startswith("app_")
    assert app.client_id.startswith("client_")
    assert list(app.scopes) == ["invoices:read", "invoices:write"]
    assert (app.token_ttl_seconds, app.enabled, app.organization_id) == (600, True, org.id)

    updated = stubs.apps.UpdateApplication(
        app_pb.UpdateApplicationRequest(
            application=res.Application(id=app.id, scopes=["invoices:read"], enabled=False),
            update_mask=field_mask_pb2.FieldMask(paths=["scopes", "enabled"]),
        ),
        metadata=bearer(admin_key),
    ).application
    assert list(updated.scopes) == ["invoices:read"]
    assert updated.enabled is False
    assert updated.description == "syncs invoices"
    assert updated.client_id == app.client_id

    listed = stubs.apps.ListApplications(
        app_pb.ListApplicationsRequest(organization_id=org.id), metadata=bearer(admin_key)
    )
    assert [a.id for a in listed.applications] == [app.id]
    stubs.apps.DeleteApplication(
        app_pb.DeleteApplicationRequest(id=app.id), metadata=bearer(admin_key)
    )
    listed = stubs.apps.ListApplications(
        app_pb.ListApplicationsRequest(organization_id=org.id), metadata=bearer(admin_key)
    )
    assert list(listed.applications) == []


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"name": ""}, "application.name"),
        ({"scopes": ["has space"]}, "scopes[0]"),
        ({"scopes": ["ok", 'quote"']}, "scopes[1]"),
        ({"scopes": ["dup", "dup"]}, "scopes[1]"),
        ({"audiences": ["a b"]}, "audiences[0]"),
        ({"token_ttl_seconds": -1}, "token_ttl_seconds"),
        ({"token_ttl_seconds": 86401}, "token_ttl_seconds"),
        ({"description": "x" * 2001}, "application.description"),
        # NUL, DEL and C1 controls: PostgreSQL refuses NUL in text (it must be a 400).
        ({"name": "bad\x00name"}, "application.name"),
        ({"name": "bad\x7fname"}, "application.name"),
        ({"description": "bad\x85"}, "application.description"),
    ],
)
def test_application_bad_input(
    stubs: Stubs, admin_key: str, fields: dict[str, Any], bad_field: str
) -> None:
    org = create_org(stubs, admin_key)
    err = fails(create_app, stubs, admin_key, org.id, **fields)
    assert (err.code, err.reason, err.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
        [bad_field],
    )


def test_application_in_unknown_organization(stubs: Stubs, admin_key: str) -> None:
    err = fails(create_app, stubs, admin_key, "org_01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert (err.code, err.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["application.organization_id"],
    )
    err = fails(create_app, stubs, admin_key, "")
    assert err.fields == ["application.organization_id"]


def test_client_secrets(stubs: Stubs, admin_key: str, container: App) -> None:
    org = create_org(stubs, admin_key)
    app = create_app(stubs, admin_key, org.id)
    md = bearer(admin_key)
    created = [
        stubs.apps.CreateClientSecret(
            app_pb.CreateClientSecretRequest(application_id=app.id), metadata=md
        )
        for _ in range(container.settings.max_client_secrets)
    ]
    first = created[0]
    assert first.secret.startswith("m2m_cs_")
    assert len(first.secret) == len("m2m_cs_") + 43
    assert first.client_secret.secret_hint == first.secret[-4:]
    assert len({c.secret for c in created}) == len(created)

    listed = stubs.apps.ListClientSecrets(
        app_pb.ListClientSecretsRequest(application_id=app.id), metadata=md
    ).client_secrets
    assert [s.id for s in listed] == [c.client_secret.id for c in created]
    assert all(c.secret not in str(listed) for c in created)

    err = fails(
        stubs.apps.CreateClientSecret,
        app_pb.CreateClientSecretRequest(application_id=app.id),
        metadata=md,
    )
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SECRET_LIMIT_REACHED")

    stubs.apps.RevokeClientSecret(
        app_pb.RevokeClientSecretRequest(application_id=app.id, id=first.client_secret.id),
        metadata=md,
    )
    err = fails(
        stubs.apps.RevokeClientSecret,
        app_pb.RevokeClientSecretRequest(application_id=app.id, id=first.client_secret.id),
        metadata=md,
    )
    assert err.code == grpc.StatusCode.NOT_FOUND
    # A revoked slot can be reused: rotation without downtime.
    stubs.apps.CreateClientSecret(
        app_pb.CreateClientSecretRequest(application_id=app.id), metadata=md
    )


def test_secret_expire_time_must_be_in_the_future(stubs: Stubs, admin_key: str) -> None:
    org = create_org(stubs, admin_key)
    app = create_app(stubs, admin_key, org.id)
    request = app_pb.CreateClientSecretRequest(application_id=app.id)
    request.expire_time.FromSeconds(1_000_000)
    err = fails(stubs.apps.CreateClientSecret, request, metadata=bearer(admin_key))
    assert err.fields == ["expire_time"]


# --- tenant isolation ---------------------------------------------------------


def test_organization_key_sees_only_its_organization(
    stubs: Stubs, admin_key: str, container: App
) -> None:
    mine = create_org(stubs, admin_key, "Mine")
    theirs = create_org(stubs, admin_key, "Theirs")
    my_app = create_app(stubs, admin_key, mine.id, name="mine")
    their_app = create_app(stubs, admin_key, theirs.id, name="theirs")
    their_secret = stubs.apps.CreateClientSecret(
        app_pb.CreateClientSecretRequest(application_id=their_app.id), metadata=bearer(admin_key)
    ).client_secret
    _, org_key = container.admin_keys.create_local(mine.id)
    md = bearer(org_key)

    # Own organization: full management of applications and secrets.
    assert (
        stubs.apps.GetApplication(
            app_pb.GetApplicationRequest(id=my_app.id), metadata=md
        ).application.id
        == my_app.id
    )
    created = create_app(stubs, org_key, mine.id, name="by-org-key")
    stubs.apps.CreateClientSecret(
        app_pb.CreateClientSecretRequest(application_id=created.id), metadata=md
    )
    listed = stubs.apps.ListApplications(app_pb.ListApplicationsRequest(), metadata=md)
    assert {a.id for a in listed.applications} == {my_app.id, created.id}
    orgs = stubs.orgs.ListOrganizations(org_pb.ListOrganizationsRequest(), metadata=md)
    assert [o.id for o in orgs.organizations] == [mine.id]

    # Another organization's resources are NOT_FOUND, exactly like missing ones.
    missing = "app_01ARZ3NDEKTSV4RRFFQ69G5FAV"
    calls: list[tuple[Callable[..., Any], Any, Any]] = [
        (
            stubs.apps.GetApplication,
            app_pb.GetApplicationRequest(id=their_app.id),
            app_pb.GetApplicationRequest(id=missing),
        ),
        (
            stubs.apps.UpdateApplication,
            app_pb.UpdateApplicationRequest(
                application=res.Application(id=their_app.id, name="pwned"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            ),
            app_pb.UpdateApplicationRequest(
                application=res.Application(id=missing, name="pwned"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            ),
        ),
        (
            stubs.apps.DeleteApplication,
            app_pb.DeleteApplicationRequest(id=their_app.id),
            app_pb.DeleteApplicationRequest(id=missing),
        ),
        (
            stubs.apps.CreateClientSecret,
            app_pb.CreateClientSecretRequest(application_id=their_app.id),
            app_pb.CreateClientSecretRequest(application_id=missing),
        ),
        (
            stubs.apps.ListClientSecrets,
            app_pb.ListClientSecretsRequest(application_id=their_app.id),
            app_pb.ListClientSecretsRequest(application_id=missing),
        ),
        (
            stubs.apps.RevokeClientSecret,
            app_pb.RevokeClientSecretRequest(application_id=their_app.id, id=their_secret.id),
            app_pb.RevokeClientSecretRequest(application_id=missing, id=their_secret.id),
        ),
        (
            stubs.apps.RevokeApplicationTokens,
            app_pb.RevokeApplicationTokensRequest(id=their_app.id),
            app_pb.RevokeApplicationTokensRequest(id=missing),
        ),
        (
            stubs.apps.ListApplications,
            app_pb.ListApplicationsRequest(organization_id=theirs.id),
            app_pb.ListApplicationsRequest(organization_id="org_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        ),
        (
            stubs.orgs.GetOrganization,
            org_pb.GetOrganizationRequest(id=theirs.id),
            org_pb.GetOrganizationRequest(id="org_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        ),
    ]
    for call, theirs_request, missing_request in calls:
        err_theirs = fails(call, theirs_request, metadata=md)
        err_missing = fails(call, missing_request, metadata=md)
        assert err_theirs.code == grpc.StatusCode.NOT_FOUND, call
        assert (err_theirs.reason, err_theirs.fields) == (err_missing.reason, err_missing.fields)
    err = fails(create_app, stubs, org_key, theirs.id)
    assert err.fields == ["application.organization_id"]

    # Nothing of theirs changed.
    after = stubs.apps.GetApplication(
        app_pb.GetApplicationRequest(id=their_app.id), metadata=bearer(admin_key)
    ).application
    assert after == their_app
    secrets = stubs.apps.ListClientSecrets(
        app_pb.ListClientSecretsRequest(application_id=their_app.id), metadata=bearer(admin_key)
    ).client_secrets
    assert [s.id for s in secrets] == [their_secret.id]

    # Organization keys cannot manage organizations themselves.
    err = fails(create_org, stubs, org_key, "New")
    assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    err = fails(
        stubs.orgs.DeleteOrganization, org_pb.DeleteOrganizationRequest(id=mine.id), metadata=md
    )
    assert err.code == grpc.StatusCode.PERMISSION_DENIED


# --- pagination ------------------------------------------------------------------


def test_pagination_walks_every_item_once(stubs: Stubs, admin_key: str) -> None:
    md = bearer(admin_key)
    made = [create_org(stubs, admin_key, f"Org {i}").id for i in range(5)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = stubs.orgs.ListOrganizations(
            org_pb.ListOrganizationsRequest(page_size=2, page_token=token), metadata=md
        )
        seen += [o.id for o in page.organizations]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(made)
    assert pages == 3
    all_at_once = stubs.orgs.ListOrganizations(
        org_pb.ListOrganizationsRequest(page_size=1000), metadata=md
    )
    assert [o.id for o in all_at_once.organizations] == seen


def test_page_tokens_are_tamper_evident(stubs: Stubs, admin_key: str) -> None:
    md = bearer(admin_key)
    org = create_org(stubs, admin_key)
    for i in range(3):
        create_app(stubs, admin_key, org.id, name=f"app {i}")
    token = stubs.apps.ListApplications(
        app_pb.ListApplicationsRequest(organization_id=org.id, page_size=1), metadata=md
    ).next_page_token
    assert token
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for bad in (tampered, "garbage!", token + "x"):
        err = fails(
            stubs.apps.ListApplications,
            app_pb.ListApplicationsRequest(organization_id=org.id, page_token=bad),
            metadata=md,
        )
        assert (err.code, err.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
    # Same token, different filter: rejected rather than silently mixing results.
    err = fails(
        stubs.apps.ListApplications,
        app_pb.ListApplicationsRequest(page_token=token),
        metadata=md,
    )
    assert err.reason == "INVALID_PAGE_TOKEN"
    err = fails(
        stubs.apps.ListApplications,
        app_pb.ListApplicationsRequest(page_size=-1),
        metadata=md,
    )
    assert err.fields == ["page_size"]


# --- audit ---------------------------------------------------------------------


def test_every_change_is_audited_without_secrets(
    stubs: Stubs, admin_key: str, container: App
) -> None:
    md = bearer(admin_key)
    key_id = container.admin_keys.authenticate(admin_key).admin_key_id
    org = create_org(stubs, admin_key)
    app = create_app(stubs, admin_key, org.id)
    secret = stubs.apps.CreateClientSecret(
        app_pb.CreateClientSecretRequest(application_id=app.id), metadata=md
    )
    stubs.apps.RevokeClientSecret(
        app_pb.RevokeClientSecretRequest(application_id=app.id, id=secret.client_secret.id),
        metadata=md,
    )
    stubs.apps.DeleteApplication(app_pb.DeleteApplicationRequest(id=app.id), metadata=md)

    events = stubs.audit.ListAuditEvents(
        audit_pb.ListAuditEventsRequest(organization_id=org.id), metadata=md
    ).audit_events
    assert [e.action for e in events] == [
        "application.delete",
        "client_secret.revoke",
        "client_secret.create",
        "application.create",
        "organization.create",
    ]
    assert {e.actor for e in events} == {key_id}
    assert events[2].target == secret.client_secret.id
    assert secret.secret not in str(events)
    assert secret.secret[:-4] not in str(events)

    by_app = stubs.audit.ListAuditEvents(
        audit_pb.ListAuditEventsRequest(application_id=app.id), metadata=md
    ).audit_events
    assert len(by_app) == 4

    later = audit_pb.ListAuditEventsRequest(organization_id=org.id)
    later.start_time.CopyFrom(events[0].time)
    later.start_time.seconds += 3600
    assert list(stubs.audit.ListAuditEvents(later, metadata=md).audit_events) == []

    bad = audit_pb.ListAuditEventsRequest()
    bad.start_time.seconds = 2000
    bad.end_time.seconds = 1000
    assert fails(stubs.audit.ListAuditEvents, bad, metadata=md).fields == ["end_time"]


def test_organization_key_reads_only_its_audit_events(
    stubs: Stubs, admin_key: str, container: App
) -> None:
    mine = create_org(stubs, admin_key, "Mine")
    theirs = create_org(stubs, admin_key, "Theirs")
    create_app(stubs, admin_key, theirs.id)
    _, org_key = container.admin_keys.create_local(mine.id)
    events = stubs.audit.ListAuditEvents(
        audit_pb.ListAuditEventsRequest(), metadata=bearer(org_key)
    ).audit_events
    assert events
    assert {e.organization_id for e in events} == {mine.id}
    err = fails(
        stubs.audit.ListAuditEvents,
        audit_pb.ListAuditEventsRequest(organization_id=theirs.id),
        metadata=bearer(org_key),
    )
    assert err.code == grpc.StatusCode.NOT_FOUND


def test_names_with_invisible_characters_are_refused_naming_the_field(
    stubs: Stubs, admin_key: str
) -> None:
    md = bearer(admin_key)
    org = create_org(stubs, admin_key)
    attempts = {
        "organization.name": lambda: create_org(stubs, admin_key, name="Acme\u202eCorp"),
        "application.name": lambda: create_app(stubs, admin_key, org.id, name="svc\u200b"),
        "application.description": lambda: create_app(
            stubs, admin_key, org.id, description="reads \u2066invoices\u2069"
        ),
        "admin_key.name": lambda: stubs.admin_keys.CreateAdminKey(
            ak_pb.CreateAdminKeyRequest(
                admin_key=res.AdminKey(name="ops\ufeff", role=res.ADMIN_KEY_ROLE_AUDITOR)
            ),
            metadata=md,
        ),
    }
    for field, attempt in attempts.items():
        err = fails(attempt)
        assert (err.code, err.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
        assert err.fields == [field]
        assert err.message.startswith(f"{field}: must not contain invisible")


def test_an_update_with_a_stale_etag_is_aborted_and_changes_nothing(
    stubs: Stubs, admin_key: str
) -> None:
    """AIP-154: the etag read with an application makes its update conditional."""
    org = create_org(stubs, admin_key)
    app = create_app(stubs, admin_key, org.id, scopes=["a"])
    read = stubs.apps.GetApplication(
        app_pb.GetApplicationRequest(id=app.id), metadata=bearer(admin_key)
    ).application
    assert read.etag == app.etag != ""

    def update(etag: str, scopes: list[str]) -> res.Application:
        reply: res.Application = stubs.apps.UpdateApplication(
            app_pb.UpdateApplicationRequest(
                application=res.Application(id=app.id, scopes=scopes, etag=etag),
                update_mask=field_mask_pb2.FieldMask(paths=["scopes"]),
            ),
            metadata=bearer(admin_key),
        ).application
        return reply

    first = update(read.etag, ["a", "b"])  # still as read: made
    assert list(first.scopes) == ["a", "b"]
    assert first.etag != read.etag
    error = fails(update, read.etag, ["a", "c"])  # read before that change: refused
    assert error.code == grpc.StatusCode.ABORTED
    assert (error.reason, error.metadata) == ("ETAG_MISMATCH", {"resource": "application"})
    again = stubs.apps.GetApplication(
        app_pb.GetApplicationRequest(id=app.id), metadata=bearer(admin_key)
    ).application
    assert (list(again.scopes), again.etag) == (["a", "b"], first.etag)
    # Without an etag the update is unconditional, as before.
    assert list(update("", ["d"]).scopes) == ["d"]
