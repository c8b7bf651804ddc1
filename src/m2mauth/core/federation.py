"""Workload identity federation: which external tokens an application trusts.

A workload that already holds a token from its own platform (a Kubernetes
service-account token, a GitHub Actions OIDC token, a SPIFFE JWT-SVID...)
sends it as its client assertion (the parameters of RFC 7523 section 2.2,
with ``client_id``) and gets the application's normal token, with the
application's ``org_id``: there is no m2mauth secret anywhere.

An application lists the identities it trusts as federated credentials, each
``{issuer, subject, audience}``:

* ``issuer``: the platform's OpenID Connect issuer URL (https; http only to a
  loopback host on a --dev server). Its keys come from its discovery document
  (``{issuer}/.well-known/openid-configuration``, whose ``issuer`` must be this
  very URL) and the ``jwks_uri`` it names, fetched with the bounds of
  m2mauth.remote_jwks.
* ``subject``: the token's ``sub``, exactly; or, when it ends with ``*``, any
  ``sub`` that starts with what comes before the ``*`` (the only pattern:
  ``repo:acme/billing:*`` matches every ref of one repository). A lone ``*``
  is refused: it would trust every workload of the platform.
* ``audience``: a value the token's ``aud`` must contain (the audience the
  workload asked its platform for, e.g. ``m2mauth``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from m2mauth.core.client_keys import checked_jwks_uri
from m2mauth.core.errors import InvalidField
from m2mauth.core.models import FederatedCredential

FIELD = "application.federated_credentials"
MAX_FEDERATED_CREDENTIALS = 10
MAX_SUBJECT_LENGTH = 256
MAX_AUDIENCE_LENGTH = 256


def checked_credentials(
    given: Sequence[Any], *, allow_http_loopback: bool
) -> tuple[FederatedCredential, ...]:
    """The credentials as stored, or InvalidField naming the one that is wrong."""
    if not 1 <= len(given) <= MAX_FEDERATED_CREDENTIALS:
        raise InvalidField(FIELD, f"give 1 to {MAX_FEDERATED_CREDENTIALS} federated credentials")
    checked: list[FederatedCredential] = []
    for index, credential in enumerate(given):
        field = f"{FIELD}[{index}]"
        issuer = checked_jwks_uri(
            f"{field}.issuer", credential.issuer, allow_http_loopback=allow_http_loopback
        )
        subject, audience = credential.subject, credential.audience
        if not 1 <= len(subject) <= MAX_SUBJECT_LENGTH or not subject.isprintable():
            raise InvalidField(
                f"{field}.subject", f"must be 1 to {MAX_SUBJECT_LENGTH} printable characters"
            )
        if "*" in subject[:-1] or subject == "*":
            raise InvalidField(
                f"{field}.subject",
                'may end with one "*" (a prefix match) after at least one other character',
            )
        if not 1 <= len(audience) <= MAX_AUDIENCE_LENGTH or not audience.isprintable():
            raise InvalidField(
                f"{field}.audience", f"must be 1 to {MAX_AUDIENCE_LENGTH} printable characters"
            )
        checked.append(FederatedCredential(issuer, subject, audience))
    if len(set(checked)) != len(checked):
        raise InvalidField(FIELD, "lists one credential twice")
    return tuple(checked)


def subject_matches(pattern: str, sub: str) -> bool:
    if pattern.endswith("*"):
        return sub.startswith(pattern[:-1])
    return sub == pattern


def matching(
    credentials: Sequence[FederatedCredential], claims: dict[str, Any]
) -> FederatedCredential | None:
    """The credential an (unverified) token's iss, sub and aud fit, if any."""
    iss, sub, aud = claims.get("iss"), claims.get("sub"), claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not isinstance(sub, str):
        return None
    for credential in credentials:
        if (
            credential.issuer == iss
            and credential.audience in audiences
            and subject_matches(credential.subject, sub)
        ):
            return credential
    return None
