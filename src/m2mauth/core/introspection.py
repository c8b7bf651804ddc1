"""Token introspection (RFC 7662).

RFC 7662 section 2.2: "If the introspection call is properly authorized but
the token is not active, does not exist on this server, or the protected
resource is not allowed to introspect this particular token, then the
authorization server MUST return an introspection response with the
"active" field set to "false"" -- and nothing else, so an inactive answer
never says why.

Cost: the JWT is checked in memory (parsed keys), then ONE indexed store read
(``get_token_state``) decides revocation, kill switches and enabled flags.
Nothing that revocation, a kill switch or a disabled flag changes is held
in memory (only verified signatures are remembered, see
:mod:`m2mauth.core.verification`), so a revocation is effective on the very
next call, in every process. A store failure raises StoreUnavailable: it is never turned
into ``active: false`` for a valid token, nor ``true`` for a revoked one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from m2mauth.core.client_auth import AuthenticatedClient
from m2mauth.core.clock import Clock
from m2mauth.core.interfaces import Store
from m2mauth.core.issuance import TOKEN_TYPE
from m2mauth.core.models import Principal, TokenState
from m2mauth.core.permissions import Permission, require
from m2mauth.core.verification import SignedTokens, audiences, is_current

# Who may introspect: an admin key, or an application with its own credentials.
Caller = Principal | AuthenticatedClient

INACTIVE: dict[str, Any] = {"active": False}


def may_see(caller: Caller, client_id: str, org_id: str) -> bool:
    """An application sees only its own tokens; an org-scoped admin key only its
    organization's; an environment key every token (RFC 7662 section 4 asks the
    server to limit what each protected resource may learn)."""
    if isinstance(caller, AuthenticatedClient):
        return caller.application.client_id == client_id
    return caller.can_see(org_id)


def _revoked_by_kill_switch(iat: int, cutoff: datetime | None) -> bool:
    """Tokens issued at or before the cutoff are revoked.

    iat has whole seconds and was rounded down, so a token issued in the same
    second as the kill switch but after it also counts as revoked: the
    comparison errs towards inactive, never towards active.
    """
    return cutoff is not None and iat <= cutoff.timestamp()


def is_active_state(claims: dict[str, Any], state: TokenState | None) -> bool:
    """Whether the stored facts leave a verified, unexpired token active."""
    if state is None:  # the application was deleted
        return False
    return (
        state.application_enabled
        and state.organization_enabled
        and not state.jti_revoked
        and state.organization_id == claims["org_id"]
        and not _revoked_by_kill_switch(claims["iat"], state.application_tokens_revoked_before)
        and not _revoked_by_kill_switch(claims["iat"], state.organization_tokens_revoked_before)
    )


class Introspector:
    def __init__(
        self,
        store: Store,
        tokens: SignedTokens,
        clock: Clock,
        *,
        leeway_seconds: int,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._clock = clock
        self._leeway = leeway_seconds

    def introspect(self, token: str, caller: Caller) -> dict[str, Any]:
        """RFC 7662 section 2.2 response: the claims if active, else exactly
        ``{"active": False}``. The token_type_hint (section 2.1) is not needed:
        this server issues only access tokens."""
        if isinstance(caller, Principal):
            # Checked before anything else: a key that may not introspect learns
            # nothing about any token.
            require(caller, Permission.TOKENS_INTROSPECT)
        claims = self._tokens.claims(token)
        if claims is None or not is_current(claims, self._clock(), self._leeway):
            return dict(INACTIVE)
        # Decide visibility before touching the store: someone else's token
        # costs no read and looks exactly like an unknown one.
        if not may_see(caller, claims["client_id"], claims["org_id"]):
            return dict(INACTIVE)
        with self._store.reading() as uow:
            state = uow.get_token_state(claims["client_id"], claims["jti"])
        if not is_active_state(claims, state):
            return dict(INACTIVE)
        return {
            "active": True,
            "scope": claims.get("scope", ""),
            "client_id": claims["client_id"],
            "token_type": TOKEN_TYPE,
            "exp": claims["exp"],
            "iat": claims["iat"],
            "sub": claims["sub"],
            "aud": audiences(claims),
            "iss": claims["iss"],
            "jti": claims["jti"],
            "org_id": claims["org_id"],
        }
