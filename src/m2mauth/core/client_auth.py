"""Client authentication at the token endpoint (RFC 6749 section 2.3): the seam.

A :class:`ClientAuthMethod` is one way for a client to prove who it is
(client_secret_basic and client_secret_post, see
:mod:`m2mauth.core.client_secret_auth`; private_key_jwt, see
:mod:`m2mauth.core.private_key_jwt`). :class:`ClientAuthentication` picks
the method whose credentials the request carries and lets it decide. Every
failure is the one :class:`~m2mauth.core.errors.InvalidClient`, whatever the
method and whatever the reason, so a caller never learns why; the reason goes
to the audit log through the ``on_failure`` sink. A store failure is never an
authentication failure: StoreUnavailable propagates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol

from m2mauth.core.changes import Change
from m2mauth.core.errors import InvalidClient, InvalidRequest
from m2mauth.core.models import Application, ClientSecret, Organization
from m2mauth.core.token_request import ClientCredentials

# Longest client_id we look up or record; ours are "client_" + 26 characters.
MAX_CLIENT_ID_LENGTH = 64


class AuthenticatedClient(NamedTuple):
    """The application that proved its identity, its organization and the
    secret it used (None when it used no secret: private_key_jwt)."""

    application: Application
    organization: Organization
    secret: ClientSecret | None


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why an authentication failed: for the audit log only, never for the caller."""

    client_id: str  # as presented, truncated
    reason: str  # missing_credentials | unknown_client | invalid_secret | ...
    application: Application | None


FailureSink = Callable[[AuthFailure], None]


def failed(
    client_id: str, reason: str, app: Application | None, on_failure: FailureSink | None
) -> InvalidClient:
    """Report a failure to the sink and return the one error to raise."""
    if on_failure is not None:
        on_failure(AuthFailure(client_id[:MAX_CLIENT_ID_LENGTH], reason, app))
    return InvalidClient()


class ClientAuthMethod(Protocol):
    """One client authentication method."""

    # The RFC 8414 ``token_endpoint_auth_methods_supported`` values it serves.
    names: ClassVar[tuple[str, ...]]

    def presented(self, credentials: ClientCredentials) -> bool:
        """Whether the request carries this method's credentials."""
        ...

    def claimed_client_id(self, credentials: ClientCredentials) -> str:
        """Who the credentials claim to be, before any check (for throttling)."""
        ...

    def authenticate(
        self, credentials: ClientCredentials, on_failure: FailureSink | None
    ) -> AuthenticatedClient:
        """The client, or InvalidClient made by :func:`failed` (StoreUnavailable propagates)."""
        ...

    def invalidate(self, client_id: str | None = None) -> None:
        """Forget what is cached about one client (or every client)."""
        ...

    def changed(self, change: Change) -> None:
        """Forget what a committed change makes stale (core/changes.py)."""
        ...

    def reset(self) -> None:
        """Forget everything cached."""
        ...


class ClientAuthentication:
    """Dispatches a request's credentials to the one method that recognises them."""

    def __init__(self, methods: Sequence[ClientAuthMethod]) -> None:
        self._methods = tuple(methods)

    def presented(self, credentials: ClientCredentials) -> bool:
        """Whether the request means to authenticate as a client (any method's
        credentials, or a client_id): then it must, and an admin key is not asked."""
        return bool(credentials.client_id) or any(m.presented(credentials) for m in self._methods)

    def authenticate(
        self, credentials: ClientCredentials, on_failure: FailureSink | None = None
    ) -> AuthenticatedClient:
        chosen = [m for m in self._methods if m.presented(credentials)]
        if not chosen:
            # RFC 6749 section 5.2: missing client authentication is invalid_client.
            raise failed(credentials.client_id, "missing_credentials", None, on_failure)
        if len(chosen) > 1:
            # RFC 6749 section 2.3: "The client MUST NOT use more than one
            # authentication method in each request."
            raise InvalidRequest(
                "client_authentication", "use exactly one client authentication method"
            )
        return chosen[0].authenticate(credentials, on_failure)

    def claimed_client_id(self, credentials: ClientCredentials) -> str:
        """Who the request claims to be, unverified: the client_id sent, else what
        the presented method's credentials name (an assertion's ``sub``). The
        failure throttle counts against it, so an assertion's failures are
        throttled per client like a secret's."""
        if credentials.client_id:
            return credentials.client_id
        for method in self._methods:
            if method.presented(credentials):
                return method.claimed_client_id(credentials)
        return ""

    def invalidate(self, client_id: str | None = None) -> None:
        for method in self._methods:
            method.invalidate(client_id)

    # The change feed's subscriber for every method's cache.
    def changed(self, change: Change) -> None:
        for method in self._methods:
            method.changed(change)

    def reset(self) -> None:
        for method in self._methods:
            method.reset()
