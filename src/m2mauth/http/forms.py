"""Parsing OAuth requests: form bodies and client authentication headers.

Parsing only: which credentials were sent and how, never whether they are
right (the core decides that).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_plus

from starlette.requests import ClientDisconnect, Request

from m2mauth.client_address import Network, client_address
from m2mauth.http.errors import OAuthError, invalid_request

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_BODY_BYTES = 64 * 1024
MAX_FIELDS = 64


async def read_form(request: Request) -> dict[str, str]:
    """Read a urlencoded body: right type, bounded size, each parameter at most once.

    RFC 6749 section 3.2: the token endpoint takes form-encoded POSTs, and
    "request and response parameters MUST NOT be included more than once";
    section 3.1: "parameters sent without a value MUST be treated as if they
    were omitted".
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != FORM_TYPE:
        raise invalid_request(f"the request body must be {FORM_TYPE}")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise OAuthError(413, "invalid_request", f"the body must be at most {MAX_BODY_BYTES} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise OAuthError(
                    413, "invalid_request", f"the body must be at most {MAX_BODY_BYTES} bytes"
                )
    except ClientDisconnect:
        # The client hung up before sending the whole body: its request is
        # incomplete, not our failure (no 500, no traceback). Nobody reads the
        # answer; the metrics count it as the client's invalid_request.
        raise invalid_request("the client closed the connection before the body ended") from None
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise invalid_request("the body is not valid UTF-8 form encoding") from None
    form: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen:
            raise invalid_request(f"parameter {name!r} is repeated (RFC 6749 section 3.2)")
        seen.add(name)
        if value != "":
            form[name] = value
    return form


def request_source(request: Request, trusted_proxies: Sequence[Network]) -> str:
    """The caller's address, for throttling and the audit log: the socket's,
    or what trusted proxies forwarded (see m2mauth.client_address)."""
    peer = request.client.host if request.client is not None else ""
    return client_address(peer, request.headers.get("x-forwarded-for"), trusted_proxies)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who authenticates this request, as sent (not yet verified)."""

    client_id: str = ""
    client_secret: str = ""
    admin_key: str | None = None
    # private_key_jwt (RFC 7523 section 2.2).
    client_assertion_type: str = ""
    client_assertion: str = ""


def caller(request: Request, form: dict[str, str], *, allow_admin_key: bool) -> Caller:
    """Extract client credentials (RFC 6749 section 2.3.1), a client assertion
    (RFC 7521 section 4.2) or an admin bearer key.

    Exactly one authentication method per request (RFC 6749 section 2.3:
    "The client MUST NOT use more than one authentication method in each
    request"); the core refuses a secret and an assertion together.
    """
    header = request.headers.get("authorization")
    body_id = form.get("client_id", "")
    body_secret = form.get("client_secret", "")
    assertion = Caller(
        client_assertion_type=form.get("client_assertion_type", ""),
        client_assertion=form.get("client_assertion", ""),
    )
    if (assertion.client_assertion or assertion.client_assertion_type) and header is not None:
        raise invalid_request(
            "use one client authentication method: an Authorization header or a client assertion"
        )
    if header is None:
        return Caller(
            client_id=body_id,
            client_secret=body_secret,
            client_assertion_type=assertion.client_assertion_type,
            client_assertion=assertion.client_assertion,
        )
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        client_id, client_secret = _basic(value)
        if body_secret:
            raise invalid_request("use one client authentication method: Basic or the body")
        if body_id and body_id != client_id:
            raise invalid_request("client_id in the body differs from the Basic credentials")
        return Caller(client_id=client_id, client_secret=client_secret)
    if scheme.lower() == "bearer" and allow_admin_key:
        if not value:
            raise invalid_request("the Bearer authorization header is empty")
        if body_id or body_secret:
            raise invalid_request(
                "use one authentication method: a Bearer key or client credentials"
            )
        return Caller(admin_key=value)
    raise invalid_request(
        "unsupported authorization scheme: use Basic (client_secret_basic), send "
        "client_id and client_secret in the body (client_secret_post), or a "
        "client_assertion (private_key_jwt)"
    )


def _basic(value: str) -> tuple[str, str]:
    """Decode Basic credentials; id and secret are form-urlencoded first (RFC 6749 §2.3.1)."""
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid_request("malformed Basic authorization header") from None
    raw_id, sep, raw_secret = decoded.partition(":")
    if not sep or not raw_id:
        raise invalid_request("malformed Basic authorization header: expected id:secret")
    return unquote_plus(raw_id), unquote_plus(raw_secret)
