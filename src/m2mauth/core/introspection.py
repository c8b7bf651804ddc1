"""Token introspection (RFC 7662).

RFC 7662 section 2.2: "If the introspection call is properly authorized but
the token is not active, does not exist on this server, or the protected
resource is not allowed to introspect this particular token, then the
authorization server MUST return an introspection response with the
"active" field set to "false"" -- and nothing else, so an inactive answer
never says why.

Cost: the JWT is checked in memory (parsed keys), then ONE indexed store read
(``get_token_state``) decides revocation, kill switches and enabled flags.
While the change feed is healthy (:mod:`m2mauth.core.changes`) that read is
remembered per token and forgotten when a revocation, kill switch or disabled
flag is announced, by any process, so repeated introspection costs no store
round trip and a revocation is effective everywhere within the feed's delay
(well under a second); while the feed is lost, every call reads the store.
A store failure raises StoreUnavailable: it is never turned into
``active: false`` for a valid token, nor ``true`` for a revoked one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

from m2mauth.core.changes import Change, Freshness, Kind
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


class TokenStates:
    """Introspection's one read per token, remembered while the change feed is
    healthy and forgotten as soon as a change may have made it stale: a
    revocation (its jti), a kill switch or disabled flag (its application or
    organization), or a resync. Without a healthy feed it remembers nothing."""

    def __init__(self, freshness: Freshness | None, *, size: int = 100_000) -> None:
        self._freshness = freshness
        self._size = size
        self._states: OrderedDict[tuple[str, str], TokenState | None] = OrderedDict()
        # (kind, id) -> the remembered keys a change of that jti, application or
        # organization makes stale: a change costs what it drops, not a scan
        # of every remembered token under the lock introspection waits on.
        self._index: dict[tuple[Kind, str], set[tuple[str, str]]] = {}
        self._lock = threading.Lock()
        self._epoch = 0

    @property
    def usable(self) -> bool:
        return self._freshness is not None and self._freshness.healthy

    def get(self, key: tuple[str, str]) -> tuple[bool, TokenState | None, int]:
        """(found, state, epoch): the epoch to hand back to :meth:`put`."""
        with self._lock:
            epoch = self._epoch
            if self.usable and key in self._states:
                return True, self._states[key], epoch
        return False, None, epoch

    def put(self, key: tuple[str, str], state: TokenState | None, epoch: int) -> None:
        with self._lock:
            # Read before a change arrived, or while the feed was down: maybe stale.
            if epoch != self._epoch or not self.usable:
                return
            if key in self._states:
                self._forget(key)
            self._states[key] = state
            for entry in _index_entries(key, state):
                self._index.setdefault(entry, set()).add(key)
            if len(self._states) > self._size:
                self._forget(next(iter(self._states)))

    def changed(self, change: Change) -> None:
        with self._lock:
            self._epoch += 1
            if change.kind in (Kind.TOKEN, Kind.APPLICATION, Kind.ORGANIZATION):
                for key in list(self._index.get((change.kind, change.key), ())):
                    self._forget(key)

    def reset(self) -> None:
        with self._lock:
            self._epoch += 1
            self._states.clear()
            self._index.clear()

    def _forget(self, key: tuple[str, str]) -> None:
        """Drop ``key`` and its index entries; the caller holds the lock."""
        state = self._states.pop(key)
        for entry in _index_entries(key, state):
            keys = self._index.get(entry)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._index[entry]


def _index_entries(key: tuple[str, str], state: TokenState | None) -> list[tuple[Kind, str]]:
    """What a remembered (client_id, jti) depends on: its jti, and if the store
    knew the application, that application and its organization."""
    entries = [(Kind.TOKEN, key[1])]
    if state is not None:
        entries += [
            (Kind.APPLICATION, state.application_id),
            (Kind.ORGANIZATION, state.organization_id),
        ]
    return entries


class Introspector:
    def __init__(
        self,
        store: Store,
        tokens: SignedTokens,
        clock: Clock,
        *,
        leeway_seconds: int,
        states: TokenStates | None = None,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._clock = clock
        self._leeway = leeway_seconds
        self.states = states or TokenStates(None)

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
        key = (claims["client_id"], claims["jti"])
        found, state, epoch = self.states.get(key)
        if not found:
            with self._store.reading() as uow:
                state = uow.get_token_state(*key)
            self.states.put(key, state, epoch)
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
