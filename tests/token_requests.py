"""Token requests as the transports build them, for tests that call the core directly."""

from __future__ import annotations

from m2mauth.core.token_request import ClientCredentials, TokenRequest


def secret_request(
    client_id: str,
    client_secret: str,
    scope: str = "",
    audience: str = "",
    *,
    grant_type: str = "client_credentials",
    source: str = "",
) -> TokenRequest:
    """A client_credentials request authenticated with a client secret."""
    return TokenRequest(
        grant_type=grant_type,
        credentials=ClientCredentials(client_id, client_secret),
        scope=scope,
        audience=audience,
        source=source,
    )
