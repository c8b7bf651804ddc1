"""The web console as an operator uses it, in Chromium: sign-in, the resources,
a secret shown once, key rotation, the audit trail, tenancy, CSRF, expiry."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from m2mauth.v1 import admin_key_service_pb2 as ak_pb
from m2mauth.v1 import application_service_pb2 as app_pb
from m2mauth.v1 import organization_service_pb2 as org_pb
from m2mauth.v1 import resources_pb2 as res
from tests.console.conftest import DESKTOP, PHONE, SCREENSHOTS, Served, serve, stop
from tests.grpc.conftest import bearer, make_stubs

SECRET = re.compile(r"m2m_cs_[A-Za-z0-9_-]{20,}")


@pytest.fixture
def context(chromium: Browser, server: Served) -> Iterator[BrowserContext]:
    ctx = chromium.new_context(viewport=DESKTOP, base_url=server.http_url)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def shoot(page: Page, name: str) -> None:
    """Screenshots at desktop and phone width; at both, every visible field has a
    label and nothing is wider than the screen."""
    SCREENSHOTS.mkdir(exist_ok=True)
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), textarea')]
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                .map(e => e.name || e.id)"""
        )
        assert unlabelled == [], f"{name}: fields without a label: {unlabelled}"
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} is {overflow}px wider than a {label} screen"
    page.set_viewport_size(DESKTOP)


def sign_in(page: Page, key: str) -> None:
    page.goto("/console/")
    expect(page).to_have_url(re.compile(r"/console/sign-in"))
    page.get_by_label("Admin key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Organizations")).to_be_visible()


def create_organization(page: Page, name: str) -> str:
    page.goto("/console/organizations")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("button", name="Create organization").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    match = re.search(r"/organizations/(org_\w+)", page.url)
    assert match, page.url
    return match.group(1)


def audit_actions(page: Page, **filters: str) -> list[str]:
    page.goto("/console/audit")
    for label, value in filters.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Filter").click()
    return page.locator("table.audit tbody tr td:nth-child(2)").all_inner_texts()


def test_sign_in_with_an_admin_key_and_sign_out(page: Page, server: Served) -> None:
    page.goto("/console/")
    shoot(page, "sign-in")
    page.get_by_label("Admin key").fill("m2m_ak_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    # The API's own message, next to the field.
    expect(page.locator("#e-admin_key")).to_contain_text("the admin key is not valid")
    expect(page.get_by_label("Admin key")).to_have_attribute("aria-invalid", "true")

    sign_in(page, server.admin_key)
    expect(page.locator("header")).to_contain_text("Signed in with ak_")
    [cookie] = [c for c in page.context.cookies() if c["name"] == "m2mauth_console"]
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console"
    assert server.admin_key not in cookie["value"]

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You signed out.")
    page.goto("/console/organizations")
    expect(page).to_have_url(re.compile(r"/console/sign-in"))

    # The cookie a thief copied before the sign-out is dead too: the server knows.
    page.context.add_cookies(
        [
            {
                "name": cookie["name"],
                "value": cookie["value"],
                "domain": cookie["domain"],
                "path": cookie["path"],
            }
        ]
    )
    page.goto("/console/organizations")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?ended=signed_out"))
    assert server.admin_key not in server.log()


def test_organization_application_and_a_secret_shown_once(
    page: Page, context: BrowserContext, server: Served
) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, server.admin_key)

    # The API's validation message, beside the field that caused it.
    page.get_by_role("button", name="Create organization").click()
    expect(page.locator("#e-name")).to_have_text("organization.name: is required")
    shoot(page, "organizations")
    org_id = create_organization(page, "Acme Browsers")
    page.goto("/console/organizations?q=browsers")
    expect(page.get_by_role("link", name="Acme Browsers")).to_be_visible()
    page.goto("/console/organizations?q=no-such-org")
    expect(page.get_by_role("link", name="Acme Browsers")).to_have_count(0)

    page.goto(f"/console/organizations/{org_id}")
    page.get_by_label("New name").fill("\u202eAcme")
    page.get_by_role("button", name="Rename").click()
    expect(page.locator("#e-rename-name")).to_contain_text(
        "organization.name: must not contain invisible or text-direction characters"
    )
    page.get_by_label("New name").fill("Acme Browsers Ltd")
    page.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("heading", name="Acme Browsers Ltd")).to_be_visible()
    page.get_by_role("button", name="Disable organization").click()
    expect(page.get_by_role("status")).to_contain_text("Disabled")
    page.get_by_role("button", name="Enable organization").click()
    expect(page.get_by_role("status")).to_have_text("Enabled.")
    page.get_by_role("button", name="Revoke all tokens of this organization").click()
    expect(page.get_by_role("status")).to_have_text("Every token issued until now is revoked.")

    form = page.locator("form", has=page.get_by_role("button", name="Create application"))
    form.get_by_label("Name", exact=True).fill("billing-sync")
    form.get_by_label("Scopes").fill("invoices:read invoices:write")
    form.get_by_label("Token lifetime in seconds (optional)").fill("soon")
    form.get_by_role("button", name="Create application").click()
    expect(page.locator("#e-app-token_ttl_seconds")).to_contain_text("must be a whole number")
    shoot(page, "organization")
    form.get_by_label("Token lifetime in seconds (optional)").fill("600")
    form.get_by_role("button", name="Create application").click()
    expect(page.get_by_role("heading", name="billing-sync")).to_be_visible()
    app_url = page.url.split("?")[0]
    app_id = app_url.rsplit("/", 1)[1]
    client_id = page.locator("dt:has-text('Client ID') + dd").inner_text()
    shoot(page, "application")

    edit = page.locator("form", has=page.get_by_role("button", name="Save"))
    edit.get_by_label("Scopes").fill("invoices:read invoices:read")
    edit.get_by_role("button", name="Save").click()
    expect(page.locator("#e-scopes")).to_contain_text("duplicate scope")
    edit.get_by_label("Scopes").fill("invoices:read")
    edit.get_by_label("Description").fill("Syncs invoices nightly")
    edit.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    expect(page.locator("dt:has-text('Scopes') + dd")).to_have_text("invoices:read")

    page.get_by_role("button", name="Create secret").click()
    expect(page.get_by_role("alert")).to_contain_text("It is shown only on this page")
    secret = page.get_by_label(re.compile("Client secret")).input_value()
    assert SECRET.fullmatch(secret)
    page.get_by_role("button", name="Copy").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == secret
    shoot(page, "secret-created")
    # The page's address is already the application's: nothing to resubmit.
    assert page.url == app_url

    page.reload()
    expect(page.get_by_role("heading", name="billing-sync")).to_be_visible()
    assert secret not in page.content()
    rows = page.locator("tr", has=page.get_by_role("button", name=re.compile("Revoke the secret")))
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(secret[-4:])

    # A real secret: a token for it, over the OAuth endpoint.
    token = httpx.post(
        f"{server.http_url}/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    assert token.status_code == 200, token.text

    rows.get_by_role("button").click()
    expect(page.get_by_role("status")).to_have_text("The secret is revoked.")
    expect(page.get_by_text("No live secrets.")).to_be_visible()
    refused = httpx.post(
        f"{server.http_url}/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    assert refused.status_code == 401

    actions = audit_actions(page, **{"Application ID": app_id})
    assert actions == [
        "client_secret.revoke",
        "client_secret.create",
        "application.update",
        "application.create",
    ]
    shoot(page, "audit")
    assert audit_actions(page, **{"Organization ID": org_id, "Action": "organization.create"}) == [
        "organization.create"
    ]
    # Never a secret in a later page, a URL, or the server's output.
    assert secret not in page.content()
    assert secret not in server.log()
    assert secret not in server.stdout.read_text()
    assert server.admin_key not in server.log()


def test_rotate_signing_keys_after_a_confirmation(page: Page, server: Served) -> None:
    sign_in(page, server.admin_key)
    page.get_by_role("link", name="Signing keys").click()

    def kid(state: str) -> str:
        row = page.locator("tbody tr", has=page.get_by_text(state, exact=True))
        expect(row).to_have_count(1)
        return row.locator("td").first.inner_text()

    current, upcoming = kid("CURRENT"), kid("NEXT")
    shoot(page, "signing-keys")
    page.get_by_role("link", name="Rotate").click()
    shoot(page, "rotate")
    page.get_by_role("button", name="Rotate").click()
    expect(page.locator("#e-confirm")).to_have_text("Tick the box to confirm the rotation.")
    # The NEXT key was published moments ago: publish first, promote after.
    page.get_by_label("I want to rotate the signing keys").check()
    page.get_by_role("button", name="Rotate").click()
    expect(page.get_by_role("status")).to_contain_text("Rotation scheduled")
    assert (kid("CURRENT"), kid("NEXT")) == (current, upcoming)
    scheduled = page.locator("tbody tr", has=page.get_by_text("NEXT", exact=True))
    expect(scheduled.locator("td").nth(4).locator("time")).to_have_count(1)  # when it signs
    # An emergency: at once.
    page.get_by_role("link", name="Rotate").click()
    page.get_by_label("I want to rotate the signing keys").check()
    page.get_by_label("Emergency: promote the NEXT key now").check()
    page.get_by_role("button", name="Rotate").click()
    expect(page.get_by_role("status")).to_contain_text("Rotated")
    assert kid("CURRENT") == upcoming
    assert kid("PREVIOUS") == current
    assert kid("NEXT") not in (current, upcoming)
    assert audit_actions(page, Action="signing_key.rotate") == ["signing_key.rotate"]
    assert audit_actions(page, Action="signing_key.rotate_scheduled") == [
        "signing_key.rotate_scheduled"
    ]


def test_an_organization_key_sees_only_its_organization(
    page: Page, server: Served, tmp_path: Path
) -> None:
    md = bearer(server.admin_key)
    with grpc.insecure_channel(server.grpc_target) as channel:
        stubs = make_stubs(channel)
        ours, theirs = (
            stubs.orgs.CreateOrganization(
                org_pb.CreateOrganizationRequest(organization=res.Organization(name=name)),
                metadata=md,
            ).organization
            for name in ("Ours Ltd", "Theirs Inc")
        )
        their_app = stubs.apps.CreateApplication(
            app_pb.CreateApplicationRequest(
                application=res.Application(organization_id=theirs.id, name="theirs-svc")
            ),
            metadata=md,
        ).application
        scoped = stubs.admin_keys.CreateAdminKey(
            ak_pb.CreateAdminKeyRequest(
                admin_key=res.AdminKey(name="ours", organization_id=ours.id)
            ),
            metadata=md,
        ).key
    sign_in(page, scoped)
    expect(page.get_by_role("link", name="Ours Ltd")).to_be_visible()
    expect(page.get_by_role("link", name="Theirs Inc")).to_have_count(0)
    expect(page.get_by_role("link", name="Signing keys")).to_have_count(0)
    # Another tenant's organization is "not found", as over gRPC (AIP-193).
    response = page.goto(f"/console/organizations/{theirs.id}")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("alert")).to_contain_text(f"organization '{theirs.id}' not found")
    shoot(page, "not-found")
    response = page.goto(f"/console/applications/{their_app.id}")
    assert response is not None
    assert response.status == 404
    assert "theirs-svc" not in page.content()
    response = page.goto("/console/signing-keys")
    assert response is not None
    assert response.status == 403
    expect(page.get_by_role("alert")).to_contain_text("organization-scoped admin key cannot")
    response = page.goto(f"/console/audit?organization_id={theirs.id}")
    assert response is not None
    assert response.status == 404
    assert "Theirs Inc" not in page.content()


def test_the_widest_id_in_a_message_fits_a_phone(page: Page, server: Served) -> None:
    """An id is one unbreakable word; in an error message it must wrap rather
    than widen the page (ids are random: the widest letters, W, every time)."""
    sign_in(page, server.admin_key)
    widest = "org_" + "W" * 26
    response = page.goto(f"/console/organizations/{widest}")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("alert")).to_contain_text(widest)
    shoot(page, "not-found-widest")


def test_a_post_without_its_csrf_token_is_refused(page: Page, server: Served) -> None:
    sign_in(page, server.admin_key)
    # The session cookie goes with these requests; only the token is missing or wrong.
    forms: list[dict[str, str | float | bool]] = [
        {"name": "Forged"},
        {"name": "Forged", "csrf_token": "not-the-token"},
    ]
    for form in forms:
        refused = page.request.post(f"{server.console}/organizations", form=form)
        assert refused.status == 403
        assert "security token" in refused.text()
    page.goto("/console/organizations?q=Forged")
    expect(page.get_by_text("No organizations named like")).to_be_visible()
    # The sign-in form has its own token too.
    bare = page.request.post(f"{server.console}/sign-in", form={"admin_key": server.admin_key})
    assert bare.status == 403


def test_an_idle_session_ends(chromium: Browser, tmp_path: Path) -> None:
    served = serve(tmp_path, "--console-idle-timeout-seconds", "3")
    try:
        context = chromium.new_context(viewport=DESKTOP, base_url=served.http_url)
        page = context.new_page()
        sign_in(page, served.admin_key)
        page.wait_for_timeout(1000)
        page.get_by_role("link", name="Audit log").click()  # in time: the window slides
        expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
        page.wait_for_timeout(1000)
        page.get_by_role("link", name="Organizations").click()
        expect(page.get_by_role("heading", name="Organizations")).to_be_visible()
        page.wait_for_timeout(4500)
        page.get_by_role("link", name="Audit log").click()
        expect(page).to_have_url(re.compile(r"/console/sign-in\?ended=idle"))
        expect(page.get_by_role("status")).to_contain_text("idle too long")
        context.close()
    finally:
        stop(served)


def test_everything_works_without_javascript(chromium: Browser, server: Served) -> None:
    context = chromium.new_context(
        viewport=DESKTOP, base_url=server.http_url, java_script_enabled=False
    )
    try:
        page = context.new_page()
        sign_in(page, server.admin_key)
        org_id = create_organization(page, "No Script Co")
        page.goto(f"/console/organizations/{org_id}")
        form = page.locator("form", has=page.get_by_role("button", name="Create application"))
        form.get_by_label("Name", exact=True).fill("plain-forms")
        form.get_by_role("button", name="Create application").click()
        expect(page.get_by_role("heading", name="plain-forms")).to_be_visible()
        app_url = page.url.split("?")[0]
        client_id = page.locator("dt:has-text('Client ID') + dd").inner_text()

        page.get_by_role("button", name="Create secret").click()
        secret = page.get_by_label(re.compile("Client secret")).input_value()
        assert SECRET.fullmatch(secret)
        # No script: no copy button, and the address is still the form's target.
        expect(page.get_by_role("button", name="Copy")).to_be_hidden()
        assert page.url == f"{app_url}/secrets"
        page.get_by_role("link", name="I have stored it").click()
        assert page.url == app_url
        assert secret not in page.content()

        def token_status() -> int:
            return httpx.post(
                f"{server.http_url}/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(client_id, secret),
            ).status_code

        assert token_status() == 200
        page.get_by_role("button", name="Disable application").click()
        expect(page.get_by_role("status")).to_contain_text("Disabled")
        assert token_status() == 401
        page.get_by_role("button", name="Enable application").click()
        expect(page.get_by_role("status")).to_have_text("Enabled.")
        assert token_status() == 200
        page.get_by_role("button", name="Revoke all tokens of this application").click()
        expect(page.get_by_role("status")).to_have_text("Every token issued until now is revoked.")
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("status")).to_have_text("You signed out.")
    finally:
        context.close()


def test_signing_in_with_the_keyboard_alone(page: Page, server: Served) -> None:
    page.goto("/console/sign-in")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Admin key")).to_be_focused()
    page.keyboard.type(server.admin_key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Organizations")).to_be_visible()
    # The first control after the skip link is the first page of the main menu.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Organizations")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Organizations")).to_be_visible()
