"""The management rules, at the core: update masks (AIP-134), paging (AIP-158),
tenancy (AIP-193: another tenant's resource is NOT_FOUND) and limits.

The gRPC tier checks that these reach the wire as the right status codes;
here each rule is checked where it is made, without a server.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from m2mauth.core import errors, ids
from m2mauth.core.applications import ApplicationFields, Applications, etag
from m2mauth.core.audit import AuditReader
from m2mauth.core.credentials import CredentialHasher
from m2mauth.core.interfaces import Store
from m2mauth.core.models import (
    Application,
    AuditFilter,
    FederatedCredential,
    Organization,
    Principal,
)
from m2mauth.core.organizations import Organizations
from m2mauth.core.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageTokenCodec
from m2mauth.core.root_key import DerivedKeys
from tests.unit.conftest import ENV, FakeClock


@dataclass
class Management:
    orgs: Organizations
    apps: Applications
    audit: AuditReader
    clock: FakeClock

    def org(self, name: str = "Acme") -> Organization:
        return self.orgs.create(ENV, name, "", None)

    def scoped(self, org: Organization) -> Principal:
        return Principal(admin_key_id="ak_scoped", organization_id=org.id)


@pytest.fixture
def mgmt(store: Store) -> Management:
    keys = DerivedKeys.from_root(secrets.token_bytes(32))
    pages = PageTokenCodec(keys.page_token)
    clock = FakeClock()
    hasher = CredentialHasher(keys.credential_hash)
    return Management(
        orgs=Organizations(store, pages, clock),
        apps=Applications(store, pages, hasher, clock, max_secrets=2, max_token_ttl_seconds=7200),
        audit=AuditReader(store, pages),
        clock=clock,
    )


# --- update masks ------------------------------------------------------------------


def test_an_update_mask_is_required_and_names_only_updatable_fields(mgmt: Management) -> None:
    org = mgmt.org()
    with pytest.raises(errors.InvalidField) as empty:
        mgmt.orgs.update(ENV, org.id, [], "New", "", None)
    assert empty.value.field == "update_mask"
    with pytest.raises(errors.InvalidField) as unknown:
        mgmt.orgs.update(ENV, org.id, ["id"], "New", "", None)
    assert unknown.value.field == "update_mask"
    assert "'id' cannot be updated" in unknown.value.message

    renamed = mgmt.orgs.update(ENV, org.id, ["name"], "  New  ", "ext-1", False)
    # Only the named path changed (the other values in the request are ignored).
    assert (renamed.name, renamed.external_id, renamed.enabled) == ("New", None, True)
    everything = mgmt.orgs.update(ENV, org.id, ["*"], "Newer", "ext-1", False)
    assert (everything.name, everything.external_id, everything.enabled) == (
        "Newer",
        "ext-1",
        False,
    )


def test_an_application_cannot_move_between_organizations(mgmt: Management) -> None:
    org = mgmt.org()
    app = mgmt.apps.create(ENV, org.id, ApplicationFields(name="svc"))
    with pytest.raises(errors.InvalidField) as info:
        mgmt.apps.update(ENV, app.id, ["organization_id"], ApplicationFields(name="svc"))
    assert info.value.field == "update_mask"
    assert "immutable" in info.value.message


def test_an_update_is_validated_like_a_create(mgmt: Management) -> None:
    org = mgmt.org()
    app = mgmt.apps.create(ENV, org.id, ApplicationFields(name="svc", scopes=("read",)))
    with pytest.raises(errors.InvalidField) as info:
        mgmt.apps.update(ENV, app.id, ["scopes"], ApplicationFields(scopes=("read", "read")))
    assert info.value.field == "scopes[1]"
    with pytest.raises(errors.InvalidField) as ttl:
        mgmt.apps.update(
            ENV, app.id, ["token_ttl_seconds"], ApplicationFields(token_ttl_seconds=7201)
        )
    assert ttl.value.field == "token_ttl_seconds"
    assert mgmt.apps.get(ENV, app.id).scopes == ("read",)  # nothing half applied


# --- paging --------------------------------------------------------------------------


def test_page_size_zero_is_the_default_too_large_is_clamped_negative_is_invalid(
    mgmt: Management,
) -> None:
    for i in range(MAX_PAGE_SIZE + 2):
        mgmt.org(f"org {i}")
    assert len(mgmt.orgs.list(ENV, 0, "").items) == DEFAULT_PAGE_SIZE
    assert len(mgmt.orgs.list(ENV, 10_000, "").items) == MAX_PAGE_SIZE
    with pytest.raises(errors.InvalidField) as info:
        mgmt.orgs.list(ENV, -1, "")
    assert info.value.field == "page_size"


def test_paging_walks_every_item_once_in_creation_order(mgmt: Management) -> None:
    org = mgmt.org()
    made = []
    for i in range(7):
        mgmt.clock.advance(0.001)  # ids sort by their millisecond
        made.append(mgmt.apps.create(ENV, org.id, ApplicationFields(name=f"a{i}")).id)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = mgmt.apps.list(ENV, org.id, 3, token)
        seen += [a.id for a in page.items]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == made
    assert pages == 3  # 3 + 3 + 1: no empty last page


def test_a_page_token_is_bound_to_its_list_and_filters(mgmt: Management) -> None:
    first, second = mgmt.org("one"), mgmt.org("two")
    for org in (first, second):
        for i in range(3):
            mgmt.apps.create(ENV, org.id, ApplicationFields(name=f"a{i}"))
    token = mgmt.apps.list(ENV, first.id, 1, "").next_page_token
    assert token
    with pytest.raises(errors.InvalidPageToken):
        mgmt.apps.list(ENV, second.id, 1, token)  # other filters
    with pytest.raises(errors.InvalidPageToken):
        mgmt.orgs.list(ENV, 1, token)  # another list
    with pytest.raises(errors.InvalidPageToken):
        mgmt.apps.list(
            ENV, first.id, 1, token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        )


# --- tenancy -------------------------------------------------------------------------


def test_an_organization_key_sees_only_its_organization(mgmt: Management) -> None:
    mine, theirs = mgmt.org("mine"), mgmt.org("theirs")
    my_app = mgmt.apps.create(ENV, mine.id, ApplicationFields(name="a"))
    their_app = mgmt.apps.create(ENV, theirs.id, ApplicationFields(name="b"))
    me = mgmt.scoped(mine)

    assert [o.id for o in mgmt.orgs.list(me, 0, "").items] == [mine.id]
    assert [a.id for a in mgmt.apps.list(me, "", 0, "").items] == [my_app.id]
    assert mgmt.apps.get(me, my_app.id).id == my_app.id
    # Another tenant's resources are NOT_FOUND, never PERMISSION_DENIED (AIP-193).
    for attempt in (
        lambda: mgmt.orgs.get(me, theirs.id),
        lambda: mgmt.apps.get(me, their_app.id),
        lambda: mgmt.apps.list(me, theirs.id, 0, ""),
        lambda: mgmt.apps.create_secret(me, their_app.id, None),
        lambda: mgmt.apps.revoke_tokens(me, their_app.id),
        lambda: mgmt.audit.list(me, AuditFilter(organization_id=theirs.id), 0, ""),
    ):
        with pytest.raises(errors.NotFound):
            attempt()
    # Creating in another tenant's organization names the request field.
    with pytest.raises(errors.InvalidField) as info:
        mgmt.apps.create(me, theirs.id, ApplicationFields(name="x"))
    assert info.value.field == "application.organization_id"
    assert "not found" in info.value.message
    # What only the environment may do is PERMISSION_DENIED.
    with pytest.raises(errors.PermissionDenied):
        mgmt.orgs.create(me, "another", "", None)


def test_an_organization_key_reads_only_its_audit_events(mgmt: Management) -> None:
    mine, theirs = mgmt.org("mine"), mgmt.org("theirs")
    mgmt.apps.create(ENV, theirs.id, ApplicationFields(name="b"))
    events = mgmt.audit.list(mgmt.scoped(mine), AuditFilter(), 0, "").items
    assert events
    assert {e.organization_id for e in events} == {mine.id}


def test_malformed_and_unknown_ids_are_both_not_found(mgmt: Management) -> None:
    for bad in ("nope", "app_" + "0" * 26, ids.new_id(ids.ORGANIZATION)):
        with pytest.raises(errors.NotFound):
            mgmt.apps.get(ENV, bad)
    with pytest.raises(errors.InvalidField) as info:
        mgmt.apps.get(ENV, "")
    assert info.value.field == "id"


def test_live_secrets_are_limited_per_application(mgmt: Management) -> None:
    org = mgmt.org()
    app = mgmt.apps.create(ENV, org.id, ApplicationFields(name="svc"))
    mgmt.apps.create_secret(ENV, app.id, None)
    mgmt.apps.create_secret(ENV, app.id, None)
    with pytest.raises(errors.SecretLimitReached):
        mgmt.apps.create_secret(ENV, app.id, None)
    assert len(mgmt.apps.list_secrets(ENV, app.id)) == 2


def test_an_application_etag_changes_with_any_stored_field_and_only_then() -> None:
    t = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    app = Application("app_1", "client_1", "org_1", "n", "", ("a",), (), 0, True, t, t)
    assert etag(app) == etag(dataclasses.replace(app))
    changed = [
        dataclasses.replace(app, name="m"),
        dataclasses.replace(app, scopes=("a", "b")),
        dataclasses.replace(app, enabled=False),
        dataclasses.replace(app, updated_at=t.replace(microsecond=678902)),
        dataclasses.replace(app, tokens_revoked_before=t),
        dataclasses.replace(app, federated_credentials=(FederatedCredential("i", "s", "a"),)),
    ]
    assert len({etag(app), *map(etag, changed)}) == len(changed) + 1
    # The same instant in another zone (as another driver may return it): the same etag.
    other_zone = t.astimezone(timezone(timedelta(hours=2)))
    assert etag(dataclasses.replace(app, updated_at=other_zone)) == etag(app)
