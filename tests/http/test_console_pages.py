"""The console's HTTP behaviour without a browser, over a real SQLite store:
cookies, security headers, a store failure, our own bug, and what is never
echoed or logged. (tests/console drives the same pages in Chromium.)"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from m2mauth.bootstrap import App, bootstrap
from m2mauth.core.applications import ApplicationFields
from m2mauth.core.errors import StoreUnavailable
from m2mauth.core.interfaces import UnitOfWork
from m2mauth.core.models import AdminKeyRole, Principal
from m2mauth.http.app import create_http_app
from m2mauth.http.server import HttpServer, bind, start_http_server
from m2mauth.startup import console_mount
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from tests.delegating_store import DelegatingStore
from tests.http.conftest import shim_settings

CSRF = 'name="csrf_token" value="'


class SwitchableStore(DelegatingStore):
    """A store whose database can be made unreachable, as a test says."""

    down = False

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        if self.down:
            raise StoreUnavailable()
        return self.inner.unit_of_work()

    def reading(self) -> AbstractContextManager[UnitOfWork]:
        if self.down:
            raise StoreUnavailable()
        return self.inner.reading()


@dataclass
class Console:
    app: App
    store: SwitchableStore
    admin_key: str
    base_url: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, follow_redirects=False, timeout=30)

    def signed_in(self) -> tuple[httpx.Client, str]:
        """A client with a session, and the session's CSRF token."""
        client = self.client()
        form = client.get("/console/sign-in")
        token = csrf_of(form.text)
        reply = client.post(
            "/console/sign-in", data={"csrf_token": token, "admin_key": self.admin_key}
        )
        assert reply.status_code == 303, reply.text
        page = client.get("/console/organizations")
        assert page.status_code == 200
        return client, csrf_of(page.text)


@contextmanager
def serving(app: App) -> Iterator[str]:
    """The HTTP app with the console, on a real socket on port 0; its base URL."""
    sock = bind("127.0.0.1", 0)
    http: HttpServer = start_http_server(
        create_http_app(
            app.http_backend, app.settings.issuer, console=console_mount(app, app.settings)
        ),
        sock,
        grace=1,
    )
    try:
        yield f"http://127.0.0.1:{http.port}"
    finally:
        http.stop(1)
        sock.close()


def csrf_of(html: str) -> str:
    start = html.index(CSRF) + len(CSRF)
    return html[start : html.index('"', start)]


@contextmanager
def running_console(sqlite_url: str, **settings: object) -> Iterator[Console]:
    migrate(sqlite_url)
    store = SwitchableStore(SqlStore(sqlite_url))
    config = shim_settings(8000, console=True, **settings)
    app = bootstrap(config, store=store, root_key=secrets.token_bytes(32))
    app.tokens.ring.ensure_keys()
    _, admin_key = app.admin_keys.create_local(None)
    try:
        with serving(app) as base_url:
            yield Console(app, store, admin_key, base_url)
    finally:
        app.close()
        store.inner.close()


@pytest.fixture
def console(sqlite_url: str) -> Iterator[Console]:
    with running_console(sqlite_url) as running:
        yield running


def session_cookie(console: Console) -> list[str]:
    """The attributes of the session cookie a sign-in sets, lower-cased."""
    client = console.client()
    form = client.get("/console/sign-in")
    # Sent back by hand: a client on plain HTTP keeps a Secure cookie to itself.
    [nonce] = [
        c.split(";")[0] for c in form.headers.get_list("set-cookie") if c.startswith("m2mauth_")
    ]
    reply = client.post(
        "/console/sign-in",
        data={"csrf_token": csrf_of(form.text), "admin_key": console.admin_key},
        headers={"cookie": nonce},
    )
    [cookie] = [c for c in reply.headers.get_list("set-cookie") if c.startswith("m2mauth_console=")]
    assert console.admin_key not in cookie
    return [a.strip().lower() for a in cookie.split(";")]


def test_the_session_cookie_is_httponly_strict_and_secure_behind_tls(
    console: Console, tmp_path: Path
) -> None:
    attributes = session_cookie(console)
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/console" in attributes
    # Plain HTTP on loopback: a Secure cookie would never come back.
    assert "secure" not in attributes
    # TLS ended by a proxy in front (--allow-plaintext): the browser is on https.
    with running_console(f"sqlite:///{tmp_path / 'behind-tls.db'}", allow_plaintext=True) as tls:
        assert "secure" in session_cookie(tls)


def test_pages_are_never_cached_framed_or_scripted_from_elsewhere(console: Console) -> None:
    client, _ = console.signed_in()
    for path in ("/console/sign-in", "/console/organizations", "/console/audit"):
        headers = client.get(path).headers
        assert headers["cache-control"] == "no-store"
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"]


def test_a_store_failure_is_a_503_page_and_changes_nothing(console: Console) -> None:
    client, token = console.signed_in()
    console.store.down = True
    for reply in (
        client.get("/console/organizations"),
        client.post("/console/organizations", data={"csrf_token": token, "name": "Acme"}),
    ):
        assert reply.status_code == 503
        assert reply.headers["retry-after"] == "1"
        assert "The store is unavailable" in reply.text
        assert "Traceback" not in reply.text
    console.store.down = False
    page = client.get("/console/organizations")
    assert "No organizations" in page.text


def test_a_secret_typed_into_a_name_is_refused_and_never_shown_again(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    client, token = console.signed_in()
    leaked = "m2m_cs_" + secrets.token_urlsafe(32)
    with caplog.at_level(logging.DEBUG):
        reply = client.post("/console/organizations", data={"csrf_token": token, "name": leaked})
        searched = client.get("/console/organizations", params={"q": leaked})
    assert reply.status_code == 400
    assert "organization.name: must not" in reply.text
    # The server's log: this process's m2mauth loggers (uvicorn's access log is off).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("m2mauth"))
    for text in (reply.text, searched.text, logged):
        assert leaked not in text
    assert console.admin_key not in logged


def test_our_bug_is_a_500_page_that_shows_no_internals(
    console: Console, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = console.signed_in()

    def broken(*args: object) -> None:
        raise RuntimeError("internal detail 1234")

    monkeypatch.setattr(console.app.organizations, "list", broken)
    reply = client.get("/console/organizations")
    assert reply.status_code == 500
    assert "internal detail" not in reply.text
    assert "internal detail 1234" in caplog.text


def test_a_session_cookie_from_another_root_key_is_no_session(
    console: Console, tmp_path: Path
) -> None:
    client, _ = console.signed_in()
    with running_console(f"sqlite:///{tmp_path / 'other.db'}") as other:
        stranger = other.client()
        stranger.cookies.update(client.cookies)
        reply = stranger.get("/console/organizations")
    assert reply.status_code == 303
    assert reply.headers["location"] == "/console/sign-in?ended=none"


def test_organizations_page_by_page_and_search_across_pages(console: Console) -> None:
    env = console.app.admin_keys.authenticate(console.admin_key)
    for i in range(25):
        console.app.organizations.create(
            env, f"{'Needle' if i in (3, 22) else 'Hay'} {i}", "", None
        )
    client, _ = console.signed_in()

    first = client.get("/console/organizations")
    assert first.text.count("<tr>") == 1 + 20  # the header row and a page
    assert 'rel="next"' in first.text
    start = first.text.index('rel="next" href="') + len('rel="next" href="')
    second = client.get(first.text[start : first.text.index('"', start)].replace("&amp;", "&"))
    assert second.text.count("<tr>") == 1 + 5
    assert 'rel="next"' not in second.text

    # A match on the second page of the core's listing is found from the first.
    found = client.get("/console/organizations", params={"q": "needle"})
    assert ">Needle 3<" in found.text
    assert ">Needle 22<" in found.text
    assert ">Hay 4<" not in found.text


def test_signing_out_deletes_the_session_cookie_and_sets_no_other(console: Console) -> None:
    """Only the deletion: a refreshed session cookie beside it would outlive the
    sign-out in the browser (the server refuses it, but should never send it)."""
    client, token = console.signed_in()
    reply = client.post("/console/sign-out", data={"csrf_token": token})
    sessions = [c for c in reply.headers.get_list("set-cookie") if c.startswith("m2mauth_console=")]
    assert len(sessions) == 1, sessions
    assert "max-age=0" in sessions[0].lower() or 'm2mauth_console=""' in sessions[0]
    assert "m2mauth_console" not in client.cookies
    assert client.get("/console/organizations").status_code in (302, 303)


def test_a_save_over_someone_elses_change_is_shown_not_applied(console: Console) -> None:
    """Two admins edit one application: the second save, made on a page opened
    before the first, would write back what it showed. It is refused (409),
    the page shows the application as it is now with the typed values kept,
    and saving again from that page works."""
    principal = Principal(admin_key_id="ak_test", organization_id=None)
    org = console.app.organizations.create(principal, "Acme", "", True)
    made = console.app.applications.create(principal, org.id, ApplicationFields(name="before"))
    client, _ = console.signed_in()
    page = client.get(f"/console/applications/{made.id}")
    token = csrf_of(page.text)
    opened_etag = page.text.split('name="etag" value="', 1)[1].split('"', 1)[0]
    # Meanwhile another admin sets scopes.
    console.app.applications.update(
        principal, made.id, ["scopes"], ApplicationFields(scopes=("invoices:read",))
    )
    form = {"csrf_token": token, "etag": opened_etag, "name": "renamed", "scopes": ""}
    stale = client.post(f"/console/applications/{made.id}/edit", data=form)
    assert stale.status_code == 409
    assert "Someone changed this application" in stale.text
    assert 'value="renamed"' in stale.text  # what was typed is kept
    assert console.app.applications.get(principal, made.id).scopes == ("invoices:read",)
    fresh_etag = stale.text.split('name="etag" value="', 1)[1].split('"', 1)[0]
    assert fresh_etag != opened_etag
    saved = client.post(f"/console/applications/{made.id}/edit", data={**form, "etag": fresh_etag})
    assert saved.status_code == 303, saved.text
    assert console.app.applications.get(principal, made.id).name == "renamed"


def test_a_form_shown_again_for_a_typo_keeps_the_etag_it_was_typed_against(
    console: Console,
) -> None:
    """A save refused for a bad field shows the typed values again; saving
    them after the fix must still notice a change made meanwhile."""
    principal = Principal(admin_key_id="ak_test", organization_id=None)
    org = console.app.organizations.create(principal, "Acme", "", True)
    made = console.app.applications.create(principal, org.id, ApplicationFields(name="before"))
    client, _ = console.signed_in()
    page = client.get(f"/console/applications/{made.id}")
    opened_etag = page.text.split('name="etag" value="', 1)[1].split('"', 1)[0]
    form = {"csrf_token": csrf_of(page.text), "etag": opened_etag, "name": "renamed"}
    console.app.applications.update(
        principal, made.id, ["scopes"], ApplicationFields(scopes=("invoices:read",))
    )
    typo = client.post(
        f"/console/applications/{made.id}/edit", data={**form, "token_ttl_seconds": "abc"}
    )
    assert typo.status_code == 400
    assert typo.text.split('name="etag" value="', 1)[1].split('"', 1)[0] == opened_etag
    fixed = client.post(
        f"/console/applications/{made.id}/edit", data={**form, "token_ttl_seconds": "600"}
    )
    assert fixed.status_code == 409
    assert console.app.applications.get(principal, made.id).scopes == ("invoices:read",)


def test_a_key_that_may_not_rotate_is_told_before_the_confirmation(console: Console) -> None:
    """An auditor key reads signing keys but may not rotate them: refused on the
    confirmation page itself, not after confirming."""
    _, auditor = console.app.admin_keys.create_local(None, name="audit", role=AdminKeyRole.AUDITOR)
    client = console.client()
    form = client.get("/console/sign-in")
    signed = client.post(
        "/console/sign-in", data={"csrf_token": csrf_of(form.text), "admin_key": auditor}
    )
    assert signed.status_code == 303, signed.text
    assert client.get("/console/signing-keys").status_code == 200
    assert client.get("/console/signing-keys/rotate").status_code == 403
