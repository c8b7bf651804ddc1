"""What a verified access token tells the API: who called, for which organization, which scopes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from m2mauth.verify.errors import InsufficientScope, InvalidToken, WrongOrganization

#: RFC 9068 section 2.2 requires these in every JWT access token; m2mauth adds org_id.
REQUIRED_CLAIMS: tuple[str, ...] = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti", "org_id")


@dataclass(frozen=True)
class VerifiedToken:
    """An access token whose signature, issuer, audience, lifetime and claims were checked.

    ``org_id`` is the organization the calling application belongs to: scope every
    lookup by it (the per-organization isolation m2mauth's tokens exist for).
    """

    org_id: str
    client_id: str
    scopes: frozenset[str]
    jti: str
    expires_at: datetime
    subject: str
    issued_at: datetime
    #: Every claim of the token, read-only.
    claims: Mapping[str, Any] = field(repr=False, compare=False)

    def has_scopes(self, *scopes: str) -> bool:
        """Whether the token was granted every one of ``scopes``."""
        return self.scopes.issuperset(scopes)

    def require_scopes(self, *scopes: str) -> None:
        """Raise InsufficientScope unless the token has every one of ``scopes``."""
        if not self.has_scopes(*scopes):
            raise InsufficientScope(scopes)

    def require_org(self, org_id: str) -> None:
        """Raise WrongOrganization unless the resource's ``org_id`` is the token's."""
        if org_id != self.org_id:
            raise WrongOrganization()

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> VerifiedToken:
        """Build from claims whose signature and registered claims pyjwt has checked.

        Checks what pyjwt does not: the types of the m2mauth claims and that the
        NumericDates are numbers (pyjwt's ``int()`` would accept the string "123").
        """
        strings = {}
        for name in ("sub", "client_id", "jti", "org_id"):
            value = claims.get(name)
            if not isinstance(value, str) or not value:
                raise InvalidToken(f"the token's {name} claim is not a non-empty string")
            strings[name] = value
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            # RFC 9068 section 2.2.3.1: a space-delimited string (RFC 8693 section 4.2).
            raise InvalidToken("the token's scope claim is not a string")
        return cls(
            org_id=strings["org_id"],
            client_id=strings["client_id"],
            scopes=frozenset(scope.split()),
            jti=strings["jti"],
            expires_at=_numeric_date(claims, "exp"),
            subject=strings["sub"],
            issued_at=_numeric_date(claims, "iat"),
            claims=MappingProxyType(dict(claims)),
        )


def _numeric_date(claims: Mapping[str, Any], name: str) -> datetime:
    value = claims.get(name)
    # RFC 7519 section 2: NumericDate is a JSON number; bool is an int in Python.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"the token's {name} claim is not a number")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError) as err:
        raise InvalidToken(f"the token's {name} claim is out of range") from err
