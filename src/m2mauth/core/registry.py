"""What the token endpoint supports: every client authentication method and
every grant, registered once.

The token endpoint is built from these lists, and the RFC 8414 metadata
document, the OpenAPI document and the shim's messages read
:data:`SUPPORTED`, so a new method is one module (a class with ``names`` and
``from_parts``) plus one line here, and every place that names the supported
methods follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from m2mauth.core.client_auth import ClientAuthMethod
from m2mauth.core.client_credentials import ClientCredentialsGrant
from m2mauth.core.client_keys import ASSERTION_ALGORITHMS
from m2mauth.core.client_secret_auth import ClientSecretAuth
from m2mauth.core.federated_auth import FederatedCredentialAuth
from m2mauth.core.issuance import Grant
from m2mauth.core.policy import TokenParts
from m2mauth.core.private_key_jwt import PrivateKeyJwtAuth


class ClientAuthMethodType(Protocol):
    """A ClientAuthMethod class: its RFC 8414 names and how it is built."""

    @property
    def names(self) -> tuple[str, ...]: ...

    def from_parts(self, parts: TokenParts) -> ClientAuthMethod: ...


class GrantType(Protocol):
    """A Grant class: its grant_type value and how it is built."""

    @property
    def grant_type(self) -> str: ...

    def from_parts(self, parts: TokenParts) -> Grant: ...


CLIENT_AUTH_METHODS: tuple[ClientAuthMethodType, ...] = (
    ClientSecretAuth,
    PrivateKeyJwtAuth,
    FederatedCredentialAuth,
)
GRANTS: tuple[GrantType, ...] = (ClientCredentialsGrant,)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What RFC 8414 section 2 asks a server to advertise about its token endpoint."""

    grant_types: tuple[str, ...]
    # At the token endpoint, and for introspection and revocation callers.
    client_auth_methods: tuple[str, ...]
    # RFC 8414 token_endpoint_auth_signing_alg_values_supported (private_key_jwt).
    assertion_signing_algorithms: tuple[str, ...]


SUPPORTED = Capabilities(
    grant_types=tuple(grant.grant_type for grant in GRANTS),
    client_auth_methods=tuple(name for method in CLIENT_AUTH_METHODS for name in method.names),
    assertion_signing_algorithms=ASSERTION_ALGORITHMS,
)
