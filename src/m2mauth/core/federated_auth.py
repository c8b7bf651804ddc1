"""Workload identity federation as a client authentication method: a workload's
own platform token, sent as the client assertion, authenticates the application
that trusts it (see :mod:`m2mauth.core.federation` for what is trusted).

The request carries ``client_id`` (the application: the token's ``sub`` is the
workload, not a client_id), ``client_assertion_type`` =
``urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` (RFC 7523 section
2.2) and the platform token as ``client_assertion``. It is accepted only if:

* the application's method is ``federated`` and one of its federated
  credentials has the token's ``iss``, one of its ``aud`` and a subject that
  matches its ``sub``;
* its ``alg`` is RS256, PS256, ES256 or EdDSA and its signature verifies with
  the issuer's key its ``kid`` names, from the issuer's discovery document and
  JWK Set (fetched again, at most every 30 s, for an unknown kid);
* ``exp`` is present, not past, at most the client assertion maximum lifetime
  ahead; ``nbf`` and ``iat`` not in the future (with the clock leeway).

Unlike an application's own assertions, a platform token carries no promise
of single use (a Kubernetes service-account token is presented again and
again until the kubelet rotates it), so its ``jti`` is not recorded: a stolen
platform token is good for its remaining lifetime, as it is at the platform.
Every failure is the one InvalidClient, its reason for the audit log only; a
store failure is StoreUnavailable.
"""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

import jwt

from m2mauth.core.changes import Change
from m2mauth.core.client_auth import (
    AuthenticatedClient,
    FailureSink,
    failed,
)
from m2mauth.core.client_keys import ASSERTION_ALGORITHMS, RemoteJwks, fetched_key
from m2mauth.core.clock import Clock
from m2mauth.core.errors import InvalidRequest
from m2mauth.core.federation import matching
from m2mauth.core.interfaces import Store
from m2mauth.core.models import (
    Application,
    FederatedCredential,
    Organization,
    TokenEndpointAuthMethod,
)
from m2mauth.core.policy import TokenParts
from m2mauth.core.private_key_jwt import (
    JWT_BEARER_ASSERTION_TYPE,
    federated_shape,
    load_client,
    state_problem,
    time_problem,
    unverified_parts,
)
from m2mauth.core.token_request import ClientCredentials


class FederatedCredentialAuth:
    """The ClientAuthMethod of workload identity federation."""

    # On the wire it is private_key_jwt's parameters (RFC 8414 has no other name).
    names: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        max_lifetime_seconds: int,
        leeway_seconds: int,
        remote_jwks: RemoteJwks | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._max_lifetime = max_lifetime_seconds
        self._leeway = leeway_seconds
        self._remote = remote_jwks

    @classmethod
    def from_parts(cls, parts: TokenParts) -> FederatedCredentialAuth:
        policy = parts.policy
        return cls(
            parts.store,
            parts.clock,
            max_lifetime_seconds=policy.client_assertion_max_lifetime_seconds,
            leeway_seconds=policy.clock_leeway_seconds,
            remote_jwks=parts.remote_jwks,
        )

    def presented(self, credentials: ClientCredentials) -> bool:
        return federated_shape(credentials)

    def claimed_client_id(self, credentials: ClientCredentials) -> str:
        return credentials.client_id

    def authenticate(
        self, credentials: ClientCredentials, on_failure: FailureSink | None = None
    ) -> AuthenticatedClient:
        if credentials.client_assertion_type != JWT_BEARER_ASSERTION_TYPE:
            raise InvalidRequest("client_assertion_type", f"must be {JWT_BEARER_ASSERTION_TYPE}")
        client_id = credentials.client_id
        if not client_id:
            # The token's sub is the workload: only client_id names the application.
            raise InvalidRequest("client_id", "is required with a workload's platform token")
        parts = unverified_parts(credentials.client_assertion)
        if parts is None:  # federated_shape parsed it: only a bug gets here
            raise failed(client_id, "malformed_assertion", None, on_failure)
        header, claims = parts
        app, org = load_client(self._store, client_id)
        reason = self._check(credentials.client_assertion, header, claims, app, org)
        if reason or app is None or org is None:
            raise failed(client_id, reason, app, on_failure)
        return AuthenticatedClient(app, org, None)

    def _check(
        self,
        token: str,
        header: dict[str, Any],
        claims: dict[str, Any],
        app: Application | None,
        org: Organization | None,
    ) -> str:
        if app is None:
            return "unknown_client"
        if app.token_endpoint_auth_method is not TokenEndpointAuthMethod.FEDERATED:
            # Not a federated application: for it iss must be sub (RFC 7523).
            return "issuer_subject_mismatch"
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ASSERTION_ALGORITHMS or (kid is not None and not isinstance(kid, str)):
            return "algorithm_not_allowed"
        credential = matching(app.federated_credentials, claims)
        if credential is None:
            return "no_matching_federated_credential"
        key = self._key(credential, alg, kid)
        if key is None:
            return "unknown_key"
        return self._verify(token, key, alg, credential) or state_problem(app, org)

    def _key(self, credential: FederatedCredential, alg: str, kid: str | None) -> Any | None:
        if self._remote is None:
            return None
        return fetched_key(partial(self._remote.issuer_jwks, credential.issuer), alg, kid)

    def _verify(self, token: str, key: Any, alg: str, credential: FederatedCredential) -> str:
        try:
            verified = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=credential.audience,
                issuer=credential.issuer,
                options={
                    "require": ["exp", "iss", "sub", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            return f"missing_{exc.claim}"
        except jwt.InvalidSignatureError:
            return "invalid_signature"
        except jwt.InvalidTokenError:
            return "invalid_assertion"
        now = self._clock().timestamp()
        return time_problem(verified, now, self._max_lifetime, self._leeway)

    # Nothing is cached here (the issuers' key sets are, by the RemoteJwks).
    def invalidate(self, client_id: str | None = None) -> None:
        pass

    def changed(self, change: Change) -> None:
        pass

    def reset(self) -> None:
        pass
