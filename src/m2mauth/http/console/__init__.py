"""The operators' web console: server-rendered pages under ``/console``.

Plain HTML forms with POST-redirect-GET, so it works without JavaScript (one
small script only adds a copy button). Sign-in trades an admin key for a
signed session (:mod:`m2mauth.core.console_sessions`); every page then calls
the same core operations, with the same permission checks, as the gRPC API.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from m2mauth.client_address import Network
from m2mauth.core.applications import Applications
from m2mauth.core.audit import AuditReader
from m2mauth.core.console_sessions import ENDED, ConsoleSessions, SessionEnded
from m2mauth.core.errors import AdminKeyInvalid, StoreUnavailable
from m2mauth.core.key_management import SigningKeyAdmin
from m2mauth.core.organizations import Organizations
from m2mauth.http import forms
from m2mauth.http.console.guard import (
    CSRF_FIELD,
    PREFIX,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    Call,
    Console,
)
from m2mauth.http.console.pages import Pages
from m2mauth.http.errors import OAuthError

STATIC = Path(__file__).parent / "static"
ADMIN_KEY_FIELD = "admin_key"


class SignIn:
    """The two pages outside a session: sign-in (with its own CSRF token, bound
    to a nonce cookie) and sign-out."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def form(self, request: Request, status: int = 200, error: str = "") -> Response:
        nonce = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(16)
        ended = request.query_params.get("ended", "")
        response = self.console.render(
            "sign_in.html",
            status,
            csrf=self.console.sessions.sign_in_csrf(nonce),
            ended=ENDED.get(ended, "") if ended != "none" else "",
            error=error,
        )
        self.console.set_cookie(response, request, SIGN_IN_COOKIE, nonce)
        return response

    async def get(self, request: Request) -> Response:
        return self.form(request)

    async def post(self, request: Request) -> Response:
        try:
            form = await forms.read_form(request)
        except OAuthError as err:
            return self.console.error_page(err.status, err.description)
        nonce = request.cookies.get(SIGN_IN_COOKIE, "")
        if not self.console.sessions.sign_in_csrf_ok(nonce, form.get(CSRF_FIELD, "")):
            return self.console.error_page(
                403, "This form is missing its security token: reload the page and retry."
            )
        source = self.console.source(request)
        try:
            _, value = await run_in_threadpool(
                self.console.sessions.sign_in, form.get(ADMIN_KEY_FIELD, ""), source
            )
        except AdminKeyInvalid as exc:
            return self.form(request, 401, exc.message)
        except StoreUnavailable:
            return self.console.error_page(503, "The store is unavailable; retry in a moment.")
        response = self.console.redirect("/")
        self.console.set_cookie(response, request, SESSION_COOKIE, value)
        self.console.clear_cookie(response, request, SIGN_IN_COOKIE)
        return response

    def sign_out(self, call: Call) -> Response:
        self.console.sessions.sign_out(call.session)
        # Raised, not returned: the page runner then sends the sign-in page that
        # deletes the cookie, and no refreshed session cookie beside it.
        raise SessionEnded("signed_out")


def create_console(
    sessions: ConsoleSessions,
    organizations: Organizations,
    applications: Applications,
    audit: AuditReader,
    signing_keys: SigningKeyAdmin,
    *,
    secure_cookies: bool,
    trusted_proxies: Sequence[Network] = (),
) -> Mount:
    """The console as one mount for the HTTP app, at ``/console``.

    ``secure_cookies``: mark cookies Secure even on plain HTTP (TLS ends at a
    proxy in front); they are always Secure on an https request."""
    console = Console(sessions, secure_cookies=secure_cookies, trusted_proxies=trusted_proxies)
    pages = Pages(console, organizations, applications, audit, signing_keys)
    sign_in = SignIn(console)
    g = console.guarded

    async def home(request: Request) -> Response:
        return console.redirect("/organizations")

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/sign-in", sign_in.get, methods=["GET"]),
        Route("/sign-in", sign_in.post, methods=["POST"]),
        Route("/sign-out", g(sign_in.sign_out), methods=["POST"]),
        Route("/organizations", g(pages.organizations_get), methods=["GET"]),
        Route("/organizations", g(pages.organization_create), methods=["POST"]),
        Route("/organizations/{org_id}", g(pages.organization_get), methods=["GET"]),
        Route("/organizations/{org_id}/rename", g(pages.organization_rename), methods=["POST"]),
        Route("/organizations/{org_id}/enabled", g(pages.organization_enabled), methods=["POST"]),
        Route(
            "/organizations/{org_id}/revoke-tokens",
            g(pages.organization_revoke_tokens),
            methods=["POST"],
        ),
        Route(
            "/organizations/{org_id}/applications",
            g(pages.application_create),
            methods=["POST"],
        ),
        Route("/applications/{app_id}", g(pages.application_get), methods=["GET"]),
        Route("/applications/{app_id}/edit", g(pages.application_edit), methods=["POST"]),
        Route("/applications/{app_id}/enabled", g(pages.application_enabled), methods=["POST"]),
        Route(
            "/applications/{app_id}/revoke-tokens",
            g(pages.application_revoke_tokens),
            methods=["POST"],
        ),
        Route("/applications/{app_id}/secrets", g(pages.secret_create), methods=["POST"]),
        Route(
            "/applications/{app_id}/secrets/{secret_id}/revoke",
            g(pages.secret_revoke),
            methods=["POST"],
        ),
        Route("/signing-keys", g(pages.signing_keys_get), methods=["GET"]),
        Route("/signing-keys/rotate", g(pages.rotate_confirm), methods=["GET"]),
        Route("/signing-keys/rotate", g(pages.rotate), methods=["POST"]),
        Route("/audit", g(pages.audit_get), methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return console.error_page(404, "There is no such page in the console.")

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return console.error_page(405, f"{request.method} is not allowed here.")

    return Mount(
        PREFIX,
        app=Starlette(
            routes=routes,
            exception_handlers={404: not_found, 405: method_not_allowed},
        ),
    )
