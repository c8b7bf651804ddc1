"""The console's pages: each reads its form, makes one core call, and renders.

The core decides everything (who may see what, validation, the audit trail),
exactly as for the gRPC API: a page only turns form text into the core's
arguments and the core's :class:`InvalidField` into a message beside the
field it names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import Response

from m2mauth.core.applications import ApplicationFields, Applications, etag
from m2mauth.core.audit import AuditReader
from m2mauth.core.echo import looks_like_credential
from m2mauth.core.errors import EtagMismatch, InvalidField, SecretLimitReached
from m2mauth.core.key_management import SigningKeyAdmin
from m2mauth.core.models import Application, AuditFilter, Organization
from m2mauth.core.organizations import Organizations
from m2mauth.http.console.guard import Call, Console

PAGE_SIZE = 20
# Organizations searched by name: how many the core lists per request at most,
# so that one search costs a bounded amount however many organizations exist.
SEARCH_SCAN_LIMIT = 1000
USAGE_DAYS = 14
# What a redirect after a change says, by code (never free text in a URL).
NOTICES = {
    "created": "Created.",
    "saved": "Saved.",
    "enabled": "Enabled.",
    "disabled": "Disabled: its tokens stop working and no new ones are issued.",
    "tokens_revoked": "Every token issued until now is revoked.",
    "secret_revoked": "The secret is revoked.",
    "rotated": "Rotated: the NEXT key signs now, the old CURRENT key is PREVIOUS.",
    "rotation_scheduled": (
        "Rotation scheduled: the NEXT key becomes CURRENT at its Activated time below, once "
        "every verifier's cached JWKS holds it; the CURRENT key signs until then."
    ),
}
_INDEX = re.compile(r"\[\d+\]$")


def field_errors(exc: InvalidField) -> dict[str, str]:
    """The API's message, keyed by the form field it is about:
    ``application.scopes[2]`` is the ``scopes`` field."""
    name = _INDEX.sub("", exc.field).rsplit(".", 1)[-1]
    if name == "expire_time":
        name = "expires_in_days"
    return {name: exc.message}


def echoed(form: dict[str, str]) -> dict[str, str]:
    """What a form shown again with its errors may repeat of what was typed: a
    secret typed into the wrong field is still a secret (ARCHITECTURE.md), so a
    value with a credential's shape comes back empty."""
    return {k: "" if looks_like_credential(v) else v for k, v in form.items()}


def words(text: str) -> list[str]:
    """Scopes or audiences as typed: separated by spaces, commas or new lines."""
    return [w for w in re.split(r"[\s,]+", text) if w]


def whole_number(field: str, text: str) -> int:
    text = text.strip()
    if not text:
        return 0
    if not text.isdigit():
        raise InvalidField(field, "must be a whole number")
    return int(text)


def utc_time(field: str, text: str) -> datetime | None:
    """A ``datetime-local`` input, read as UTC."""
    if not text.strip():
        return None
    try:
        return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidField(field, "must be a date and time, YYYY-MM-DDTHH:MM (UTC)") from None


@dataclass
class Pages:
    console: Console
    organizations: Organizations
    applications: Applications
    audit: AuditReader
    signing_keys: SigningKeyAdmin

    def _render(self, call: Call, template: str, status: int = 200, **ctx: Any) -> Response:
        ctx.setdefault("notice", NOTICES.get(call.query.get("done", ""), ""))
        return self.console.render(template, status, call, **ctx)

    # --- organizations --------------------------------------------------------
    def organizations_page(
        self,
        call: Call,
        status: int = 200,
        errors: dict[str, str] | None = None,
        values: dict[str, str] | None = None,
    ) -> Response:
        principal = call.session.principal
        search = echoed({"q": call.query.get("q", "").strip()})["q"]
        token = call.query.get("page_token", "")
        found: list[Organization] = []
        scanned = 0
        while True:
            page = self.organizations.list(principal, PAGE_SIZE, token)
            scanned += len(page.items)
            found += [o for o in page.items if search.casefold() in o.name.casefold()]
            token = page.next_page_token
            if not search or len(found) >= PAGE_SIZE or not token or scanned >= SEARCH_SCAN_LIMIT:
                break
        return self._render(
            call,
            "organizations.html",
            status,
            organizations=found,
            search=search,
            next_page_token=token,
            errors=errors or {},
            values=values or {},
        )

    def organizations_get(self, call: Call) -> Response:
        return self.organizations_page(call)

    def organization_create(self, call: Call) -> Response:
        f = call.form
        try:
            org = self.organizations.create(
                call.session.principal, f.get("name", ""), f.get("external_id", ""), None
            )
        except InvalidField as exc:
            return self.organizations_page(call, 400, field_errors(exc), echoed(f))
        return self.console.redirect(f"/organizations/{org.id}", done="created")

    def organization_page(
        self,
        call: Call,
        status: int = 200,
        errors: dict[str, str] | None = None,
        values: dict[str, str] | None = None,
        failed: str = "",
    ) -> Response:
        """``failed``: which form the errors and values belong to (two have a name)."""
        principal = call.session.principal
        org = self.organizations.get(principal, call.param("org_id"))
        apps = self.applications.list(
            principal, org.id, PAGE_SIZE, call.query.get("page_token", "")
        )
        return self._render(
            call,
            "organization.html",
            status,
            org=org,
            applications=apps.items,
            next_page_token=apps.next_page_token,
            errors=errors or {},
            values=values or {},
            failed=failed,
        )

    def organization_get(self, call: Call) -> Response:
        return self.organization_page(call)

    def organization_rename(self, call: Call) -> Response:
        org_id = call.param("org_id")
        try:
            self.organizations.update(
                call.session.principal, org_id, ["name"], call.form.get("name", ""), "", None
            )
        except InvalidField as exc:
            return self.organization_page(call, 400, field_errors(exc), echoed(call.form), "rename")
        return self.console.redirect(f"/organizations/{org_id}", done="saved")

    def organization_enabled(self, call: Call) -> Response:
        org_id = call.param("org_id")
        enabled = call.form.get("enabled") == "true"
        self.organizations.update(call.session.principal, org_id, ["enabled"], "", "", enabled)
        return self.console.redirect(
            f"/organizations/{org_id}", done="enabled" if enabled else "disabled"
        )

    def organization_revoke_tokens(self, call: Call) -> Response:
        org_id = call.param("org_id")
        self.organizations.revoke_tokens(call.session.principal, org_id)
        return self.console.redirect(f"/organizations/{org_id}", done="tokens_revoked")

    # --- applications -----------------------------------------------------------
    def application_create(self, call: Call) -> Response:
        org_id = call.param("org_id")
        try:
            app = self.applications.create(call.session.principal, org_id, self._fields(call.form))
        except InvalidField as exc:
            return self.organization_page(
                call, 400, field_errors(exc), echoed(call.form), "application"
            )
        return self.console.redirect(f"/applications/{app.id}", done="created")

    @staticmethod
    def _fields(form: dict[str, str]) -> ApplicationFields:
        return ApplicationFields(
            name=form.get("name", ""),
            description=form.get("description", ""),
            scopes=words(form.get("scopes", "")),
            audiences=words(form.get("audiences", "")),
            token_ttl_seconds=whole_number(
                "application.token_ttl_seconds", form.get("token_ttl_seconds", "")
            ),
        )

    def application_page(
        self,
        call: Call,
        status: int = 200,
        errors: dict[str, str] | None = None,
        values: dict[str, str] | None = None,
        form_etag: str | None = None,
    ) -> Response:
        """``form_etag``: the etag the edit form keeps, when it is shown again
        with the values typed on a page read earlier; else the application's own."""
        principal = call.session.principal
        app = self.applications.get(principal, call.param("app_id"))
        last_used, daily = self.applications.usage(principal, app.id, USAGE_DAYS)
        peak = max((d.tokens_issued for d in daily), default=0)
        return self._render(
            call,
            "application.html",
            status,
            app=app,
            etag=etag(app) if form_etag is None else form_etag,
            values=values or _app_values(app),
            errors=errors or {},
            last_used=last_used,
            daily=daily,
            peak=peak,
            secrets=self.applications.list_secrets(principal, app.id),
            now=datetime.now(UTC),
        )

    def application_get(self, call: Call) -> Response:
        return self.application_page(call)

    def application_edit(self, call: Call) -> Response:
        app_id = call.param("app_id")
        mask = ["name", "description", "scopes", "audiences", "token_ttl_seconds"]
        try:
            self.applications.update(
                call.session.principal,
                app_id,
                mask,
                self._fields(call.form),
                expected_etag=call.form.get("etag", ""),
            )
        except InvalidField as exc:
            # The typed values are shown again: so is the etag they were typed
            # against, or saving them would overwrite whatever changed meanwhile.
            return self.application_page(
                call, 400, field_errors(exc), echoed(call.form), call.form.get("etag", "")
            )
        except EtagMismatch:
            # Shown again as it is now (with its new etag), the typed values kept:
            # saving again is a choice made knowing what changed.
            changed = {
                "etag": "Someone changed this application since this page was opened; "
                "nothing was saved. Its current state is shown above: check your "
                "changes and save again."
            }
            return self.application_page(call, 409, changed, echoed(call.form))
        return self.console.redirect(f"/applications/{app_id}", done="saved")

    def application_enabled(self, call: Call) -> Response:
        app_id = call.param("app_id")
        enabled = call.form.get("enabled") == "true"
        self.applications.update(
            call.session.principal, app_id, ["enabled"], ApplicationFields(enabled=enabled)
        )
        return self.console.redirect(
            f"/applications/{app_id}", done="enabled" if enabled else "disabled"
        )

    def application_revoke_tokens(self, call: Call) -> Response:
        app_id = call.param("app_id")
        self.applications.revoke_tokens(call.session.principal, app_id)
        return self.console.redirect(f"/applications/{app_id}", done="tokens_revoked")

    # --- client secrets -----------------------------------------------------------
    def secret_create(self, call: Call) -> Response:
        """The one response that holds the secret: rendered here, never redirected to,
        never stored (the next page, and a reload, show only its hint)."""
        principal = call.session.principal
        app_id = call.param("app_id")
        try:
            days = whole_number("expire_time", call.form.get("expires_in_days", ""))
            expires = datetime.now(UTC) + timedelta(days=days) if days else None
            secret, plaintext = self.applications.create_secret(principal, app_id, expires)
        except InvalidField as exc:
            return self.application_page(call, 400, field_errors(exc))
        except SecretLimitReached as exc:
            return self.application_page(call, 409, {"expires_in_days": exc.message})
        app = self.applications.get(principal, app_id)
        return self._render(
            call, "secret_created.html", 201, app=app, secret=secret, plaintext=plaintext
        )

    def secret_revoke(self, call: Call) -> Response:
        app_id = call.param("app_id")
        self.applications.revoke_secret(call.session.principal, app_id, call.param("secret_id"))
        return self.console.redirect(f"/applications/{app_id}", done="secret_revoked")

    # --- signing keys -----------------------------------------------------------------
    def signing_keys_get(self, call: Call) -> Response:
        show_retired = call.query.get("retired") == "1"
        page = self.signing_keys.list(
            call.session.principal, PAGE_SIZE, call.query.get("page_token", ""), show_retired
        )
        return self._render(
            call,
            "signing_keys.html",
            keys=page.items,
            next_page_token=page.next_page_token,
            show_retired=show_retired,
        )

    def rotate_confirm(self, call: Call) -> Response:
        # Checked before the confirmation is shown, so a key that may not rotate
        # is told at once instead of after confirming.
        self.signing_keys.check_may_rotate(call.session.principal)
        return self._render(call, "rotate.html", error="")

    def rotate(self, call: Call) -> Response:
        if call.form.get("confirm") != "yes":
            return self._render(
                call, "rotate.html", 400, error="Tick the box to confirm the rotation."
            )
        _, _, scheduled = self.signing_keys.rotate(
            call.session.principal, None, now=call.form.get("now") == "yes"
        )
        return self.console.redirect(
            "/signing-keys", done="rotated" if scheduled is None else "rotation_scheduled"
        )

    # --- audit log --------------------------------------------------------------------
    def audit_get(self, call: Call) -> Response:
        q = call.query
        values = echoed(
            {
                name: q.get(name, "").strip()
                for name in ("organization_id", "application_id", "action", "start", "end")
            }
        )
        events: list[Any] = []
        next_token = ""
        errors: dict[str, str] = {}
        try:
            flt = AuditFilter(
                organization_id=values["organization_id"] or None,
                application_id=values["application_id"] or None,
                action=values["action"] or None,
                start=utc_time("start", values["start"]),
                end=utc_time("end", values["end"]),
            )
            page = self.audit.list(call.session.principal, flt, PAGE_SIZE, q.get("page_token", ""))
            events, next_token = page.items, page.next_page_token
        except InvalidField as exc:
            errors = field_errors(exc)
        filters = {k: v for k, v in values.items() if v}
        return self._render(
            call,
            "audit.html",
            400 if errors else 200,
            events=events,
            next_page_token=next_token,
            values=values,
            filters=filters,
            errors=errors,
        )


def _app_values(app: Application) -> dict[str, str]:
    return {
        "name": app.name,
        "description": app.description,
        "scopes": " ".join(app.scopes),
        "audiences": " ".join(app.audiences),
        "token_ttl_seconds": str(app.token_ttl_seconds or ""),
    }
