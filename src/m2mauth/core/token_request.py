"""What a token request carries, as every transport hands it to the core.

The gRPC servicer builds a :class:`TokenRequest` from ``IssueTokenRequest``;
the HTTP shim builds that same message from the form (RFC 6749 section 3.2),
so the core sees one shape whatever the transport.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What a client presented to authenticate itself (RFC 6749 section 2.3).

    Each :class:`~m2mauth.core.client_auth.ClientAuthMethod` recognises the
    parts it knows; a new method adds the fields it reads here.
    """

    client_id: str = ""
    client_secret: str = ""
    # RFC 7521 section 4.2 / RFC 7523 section 2.2 (private_key_jwt).
    client_assertion_type: str = ""
    client_assertion: str = ""


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A request to the token endpoint (RFC 6749 sections 3.2 and 4.4.2)."""

    grant_type: str
    credentials: ClientCredentials
    # Space-delimited scope-tokens (RFC 6749 section 3.3); empty asks for all allowed.
    scope: str = ""
    # The audience asked for (RFC 8707 section 2); empty asks for the default.
    audience: str = ""
    # The caller's network address as the transport saw it, for the audit log.
    source: str = ""
