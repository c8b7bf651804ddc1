"""The console's request guard: the session cookie, CSRF, and errors as pages.

Every console page goes through :func:`guarded`: it resumes the session from
its cookie (see :mod:`m2mauth.core.console_sessions`), refuses a POST whose
form lacks the session's CSRF token (403), runs the page's synchronous body
in a worker thread (the core reads the store), re-signs the cookie (the idle
window slides), and turns the core's errors into pages: NOT_FOUND 404,
PERMISSION_DENIED 403, a store failure 503, anything unexpected a logged 500
that shows no internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from m2mauth.client_address import Network
from m2mauth.core.console_sessions import ConsoleSession, ConsoleSessions, SessionEnded
from m2mauth.core.errors import DomainError, NotFound, PermissionDenied, StoreUnavailable
from m2mauth.http import forms
from m2mauth.http.errors import OAuthError

log = logging.getLogger("m2mauth.console")

PREFIX = "/console"
SESSION_COOKIE = "m2mauth_console"
SIGN_IN_COOKIE = "m2mauth_console_sign_in"
CSRF_FIELD = "csrf_token"
TEMPLATES = Path(__file__).parent / "templates"
# Pages may hold what no cache should keep (a new secret, above all); no other
# site may frame them (clickjacking) or run script in them.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


@dataclass
class Call:
    """One console request, as a page's body sees it: everything already read."""

    request: Request
    session: ConsoleSession
    csrf: str
    form: dict[str, str] = field(default_factory=dict)

    @property
    def query(self) -> Mapping[str, str]:
        return self.request.query_params

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])


PageBody = Callable[[Call], Response]


class Console:
    """What the pages share: the services, the templates and the cookie policy."""

    def __init__(
        self,
        sessions: ConsoleSessions,
        *,
        secure_cookies: bool,
        trusted_proxies: Sequence[Network] = (),
    ) -> None:
        self.sessions = sessions
        self.secure_cookies = secure_cookies
        self.trusted_proxies = tuple(trusted_proxies)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    # --- rendering ----------------------------------------------------------
    def render(
        self,
        template: str,
        status: int = 200,
        call: Call | None = None,
        **context: Any,
    ) -> HTMLResponse:
        if call is not None:
            context.setdefault("principal", call.session.principal)
            context.setdefault("csrf", call.csrf)
        context.setdefault("principal", None)
        context.setdefault("notice", "")
        context.setdefault("csrf", "")
        html = self.templates.get_template(template).render(prefix=PREFIX, **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def error_page(self, status: int, message: str, call: Call | None = None) -> HTMLResponse:
        response = self.render("error.html", status, call, code=status, message=message)
        if status == 503:
            response.headers["Retry-After"] = "1"
        return response

    def redirect(self, path: str, **query: str) -> RedirectResponse:
        """303 See Other: after a POST, the browser GETs the result (POST-redirect-GET)."""
        url = PREFIX + path + (f"?{urlencode(query)}" if query else "")
        return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)

    def source(self, request: Request) -> str:
        return forms.request_source(request, self.trusted_proxies)

    # --- cookies --------------------------------------------------------------
    def secure(self, request: Request) -> bool:
        return self.secure_cookies or request.url.scheme == "https"

    def set_cookie(self, response: Response, request: Request, name: str, value: str) -> None:
        response.set_cookie(
            name,
            value,
            max_age=int(self.sessions.lifetime.total_seconds()),
            path=PREFIX,
            secure=self.secure(request),
            httponly=True,
            samesite="strict",
        )

    def clear_cookie(self, response: Response, request: Request, name: str) -> None:
        response.delete_cookie(
            name, path=PREFIX, secure=self.secure(request), httponly=True, samesite="strict"
        )

    def to_sign_in(self, request: Request, ended: SessionEnded) -> Response:
        response = self.redirect("/sign-in", ended=ended.code)
        self.clear_cookie(response, request, SESSION_COOKIE)
        return response

    # --- the guard ----------------------------------------------------------
    def guarded(self, body: PageBody) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            form: dict[str, str] = {}
            if request.method == "POST":
                try:
                    form = await forms.read_form(request)
                except OAuthError as err:
                    return self.error_page(err.status, err.description)
            cookie = request.cookies.get(SESSION_COOKIE, "")
            return await run_in_threadpool(self._run, body, request, cookie, form)

        return endpoint

    def _run(self, body: PageBody, request: Request, cookie: str, form: dict[str, str]) -> Response:
        call: Call | None = None
        try:
            session, refreshed = self.sessions.resume(cookie)
            call = Call(request, session, self.sessions.csrf_token(session), form)
            if request.method == "POST" and not self.sessions.csrf_ok(
                session, form.get(CSRF_FIELD, "")
            ):
                return self.error_page(
                    403, "This form is missing its security token: reload the page and retry."
                )
            response = body(call)
            self.set_cookie(response, request, SESSION_COOKIE, refreshed)
            return response
        except SessionEnded as ended:
            return self.to_sign_in(request, ended)
        except Exception as exc:  # every failure becomes a page: see _failure_page
            return self._failure_page(request, exc, call)

    def _failure_page(self, request: Request, exc: Exception, call: Call | None) -> Response:
        """The core's refusals as pages; a store failure 503; our bug a logged 500."""
        if isinstance(exc, StoreUnavailable):
            return self.error_page(503, "The store is unavailable; retry in a moment.", call)
        if isinstance(exc, NotFound):
            return self.error_page(404, exc.message, call)
        if isinstance(exc, PermissionDenied):
            return self.error_page(403, exc.message, call)
        if isinstance(exc, DomainError):
            return self.error_page(400, exc.message, call)
        log.error("console page %s %s failed", request.method, request.url.path, exc_info=exc)
        return self.error_page(500, "Internal error: the server log has the details.", call)
