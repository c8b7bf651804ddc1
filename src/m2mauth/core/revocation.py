"""Token revocation (RFC 7009).

RFC 7009 section 2.1: the server "first validates the client credentials ...
and then verifies whether the token was issued to the client making the
revocation request. If this validation fails, the request is refused". So a
token of another application (or, for an organization-scoped admin key, of
another organization) is UnauthorizedClient, and the token stays active.

RFC 7009 section 2.2: "invalid tokens do not cause an error response": an
unknown, malformed, unverifiable or already expired token is a success with
nothing written.

A revocation is kept by jti until the token's exp (plus clock leeway, since
introspection accepts that much) and then purged by the periodic maintenance
(:meth:`Revoker.purge`); it lives in the store, so it survives restarts and is
seen by every process at once. The revocation and its audit event commit
together.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from m2mauth.core import audit
from m2mauth.core.changes import Change, Kind
from m2mauth.core.client_auth import AuthenticatedClient
from m2mauth.core.clock import Clock
from m2mauth.core.errors import UnauthorizedClient
from m2mauth.core.interfaces import Store
from m2mauth.core.introspection import Caller, may_see
from m2mauth.core.models import Principal, RevokedToken
from m2mauth.core.permissions import Permission, require
from m2mauth.core.verification import SignedTokens


class Revoker:
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

    def revoke(self, token: str, caller: Caller) -> bool:
        """Revoke ``token``; True if a revocation was recorded now.

        False (still a success for the caller) when there was nothing to do:
        an invalid or expired token, a deleted application, or a token
        already revoked.
        """
        if isinstance(caller, Principal):
            require(caller, Permission.TOKENS_REVOKE)
        # The signature is verified (so nobody can revoke by forging a jti),
        # but not exp: an expired token needs no revocation.
        claims = self._tokens.claims(token)
        if claims is None:
            return False
        if not may_see(caller, claims["client_id"], claims["org_id"]):
            raise UnauthorizedClient("the token was not issued to this client")
        now = self._clock()
        expires_at = datetime.fromtimestamp(claims["exp"], UTC)
        if expires_at + timedelta(seconds=self._leeway) <= now:
            return False
        actor = (
            caller.application.client_id
            if isinstance(caller, AuthenticatedClient)
            else caller.admin_key_id
        )
        with self._store.unit_of_work() as uow:
            app = uow.get_application_by_client_id(claims["client_id"])
            if app is None:  # deleted: its tokens are already inactive
                return False
            if not may_see(caller, app.client_id, app.organization_id):
                raise UnauthorizedClient("the token was not issued to this client")
            if uow.is_token_revoked(claims["jti"]):
                return False
            uow.add_revoked_token(
                RevokedToken(
                    jti=claims["jti"],
                    application_id=app.id,
                    expires_at=expires_at,
                    revoked_at=now,
                )
            )
            uow.announce(Change(Kind.TOKEN, claims["jti"]))
            uow.add_audit_event(
                audit.event(
                    now,
                    actor,
                    "token.revoke",
                    organization_id=app.organization_id,
                    application_id=app.id,
                    target=claims["jti"],
                    details={"expires_at": expires_at.isoformat()},
                )
            )
        return True

    def purge(self) -> int:
        """Delete revocations whose token can no longer introspect as active."""
        cutoff = self._clock() - timedelta(seconds=self._leeway)
        with self._store.unit_of_work() as uow:
            return uow.purge_revoked_tokens(cutoff)
