"""Sessions of the web console: an admin key, presented once at sign-in, traded
for a short signed session that every process and replica can check alike.

Why signed and not a table or process memory: ``serve --processes N`` spreads
one browser's connections over N processes (SO_REUSEPORT), and replicas share
only the store and the root key. A session kept in one process's memory would
be unknown to the next request's process; a new table would be a migration for
one feature. So the session is a value signed with a key derived from the root
key (HMAC-SHA-256), holding its id, the admin key's id and two times, and its
state is checked where that state already lives, on every request:

- the admin key, read by id from the store: revoked, expired, or its
  organization disabled or deleted, and the session ends at its next request,
  in every process (the rule of :func:`m2mauth.core.admin_keys.refusal`);
- idle and absolute expiry, from the signed times (the cookie is re-signed
  with a new "last seen" on each request: a sliding idle window);
- sign-out, from the audit log: signing out writes ``console.sign_out`` naming
  the session, and a session with such an event is over everywhere.

The admin key itself is never in the session, the cookie, a page or a log:
only its id. The cost is one indexed store read per console request, which
is what the gRPC API pays per call too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from m2mauth.core import audit
from m2mauth.core.admin_keys import AdminKeys, refusal
from m2mauth.core.clock import Clock
from m2mauth.core.interfaces import Store
from m2mauth.core.models import AuditFilter, Principal

SIGN_IN = "console.sign_in"
SIGN_OUT = "console.sign_out"
# Sign-outs of one key since a session began that are looked at; beyond this
# many the session is treated as signed out (fail closed, never open).
MAX_SIGN_OUTS_CHECKED = 100
_VERSION = 1
_MAX_COOKIE_LENGTH = 1024


# Why a session cannot be used, by code (a sign-in page is sent the code, never
# free text, so a crafted link cannot put words on it).
ENDED = {
    "none": "You are not signed in.",
    "idle": "Your session was idle too long: sign in again.",
    "expired": "Your session reached its maximum length: sign in again.",
    "key": "The admin key of your session can no longer be used: sign in with a valid key.",
    "signed_out": "You signed out.",
}


class SessionEnded(Exception):
    """No session, or one that may no longer be used; ``code`` is a key of ENDED."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(ENDED[code] + (f" ({detail})" if detail else ""))
        self.code = code


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    id: str
    principal: Principal
    issued_at: datetime
    seen_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ConsoleSessions:
    def __init__(
        self,
        store: Store,
        admin_keys: AdminKeys,
        signing_key: bytes,
        clock: Clock,
        *,
        idle_timeout: timedelta,
        lifetime: timedelta,
    ) -> None:
        self._store = store
        self._admin_keys = admin_keys
        self._key = signing_key
        self._clock = clock
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime

    # --- signing ------------------------------------------------------------
    def _mac(self, purpose: str, payload: bytes) -> bytes:
        return hmac.new(self._key, purpose.encode() + b"\0" + payload, hashlib.sha256).digest()

    def _encode(self, session: ConsoleSession) -> str:
        payload = json.dumps(
            {
                "v": _VERSION,
                "sid": session.id,
                "key": session.principal.admin_key_id,
                "iat": int(session.issued_at.timestamp()),
                "seen": int(session.seen_at.timestamp()),
            },
            separators=(",", ":"),
        ).encode()
        return f"{_b64(payload)}.{_b64(self._mac('session', payload))}"

    def _decode(self, value: str) -> tuple[str, str, datetime, datetime]:
        """(session id, admin key id, issued, last seen) of a value we signed."""
        if not value or len(value) > _MAX_COOKIE_LENGTH or value.count(".") != 1:
            raise SessionEnded("none")
        body, mac = value.split(".")
        try:
            payload = _unb64(body)
            good = hmac.compare_digest(_unb64(mac), self._mac("session", payload))
            fields = json.loads(payload) if good else None
        except (binascii.Error, ValueError):
            fields = None
        if not isinstance(fields, dict) or fields.get("v") != _VERSION:
            raise SessionEnded("none")
        return (
            str(fields["sid"]),
            str(fields["key"]),
            datetime.fromtimestamp(int(fields["iat"]), UTC),
            datetime.fromtimestamp(int(fields["seen"]), UTC),
        )

    def csrf_token(self, session: ConsoleSession) -> str:
        """The token every form of this session carries (bound to the session id)."""
        return _b64(self._mac("csrf", session.id.encode()))

    def csrf_ok(self, session: ConsoleSession, presented: str) -> bool:
        return hmac.compare_digest(presented.encode(), self.csrf_token(session).encode())

    def sign_in_csrf(self, nonce: str) -> str:
        """The sign-in form's token, bound to a random nonce the browser holds in a
        cookie (there is no session yet to bind it to)."""
        return _b64(self._mac("sign-in", nonce.encode()))

    def sign_in_csrf_ok(self, nonce: str, presented: str) -> bool:
        return bool(nonce) and hmac.compare_digest(
            presented.encode(), self.sign_in_csrf(nonce).encode()
        )

    # --- the session's life -------------------------------------------------
    def sign_in(self, presented_key: str, source: str = "") -> tuple[ConsoleSession, str]:
        """Authenticate the admin key as the API does (AdminKeyInvalid otherwise) and
        start a session; return it and its signed value (for the cookie)."""
        principal = self._admin_keys.authenticate(presented_key, source)
        now = self._clock().replace(microsecond=0)
        session = ConsoleSession(secrets.token_urlsafe(16), principal, now, now)
        with self._store.unit_of_work() as uow:
            uow.add_audit_event(
                audit.event(
                    now,
                    principal.admin_key_id,
                    SIGN_IN,
                    organization_id=principal.organization_id,
                    target=session.id,
                    details={"source": source} if source else None,
                )
            )
        return session, self._encode(session)

    def resume(self, value: str) -> tuple[ConsoleSession, str]:
        """The session a signed value names, if it may still be used, and its value
        re-signed as seen now; SessionEnded otherwise. Reads the store once."""
        session_id, key_id, issued, seen = self._decode(value)
        now = self._clock()
        if now >= issued + self.lifetime:
            raise SessionEnded("expired")
        if now >= seen + self.idle_timeout:
            raise SessionEnded("idle")
        with self._store.reading() as uow:
            key = uow.get_admin_key(key_id)
            org = (
                uow.get_organization(key.organization_id)
                if key is not None and key.organization_id is not None
                else None
            )
            sign_outs = uow.list_audit_events(
                AuditFilter(actor=key_id, action=SIGN_OUT, start=issued),
                before_id=None,
                limit=MAX_SIGN_OUTS_CHECKED,
            )
        reason = refusal(key, org, now)
        if key is None or reason:
            raise SessionEnded("key", reason.replace("_", " "))
        if len(sign_outs) >= MAX_SIGN_OUTS_CHECKED or any(
            e.target == session_id for e in sign_outs
        ):
            raise SessionEnded("signed_out")
        self._admin_keys.usage.record(key.id, now)
        principal = Principal(
            admin_key_id=key.id, organization_id=key.organization_id, role=key.role
        )
        current = ConsoleSession(session_id, principal, issued, now.replace(microsecond=0))
        return current, self._encode(current)

    def sign_out(self, session: ConsoleSession) -> None:
        """End the session in every process: the audit event is what they check."""
        with self._store.unit_of_work() as uow:
            uow.add_audit_event(
                audit.event(
                    self._clock(),
                    session.principal.admin_key_id,
                    SIGN_OUT,
                    organization_id=session.principal.organization_id,
                    target=session.id,
                )
            )
