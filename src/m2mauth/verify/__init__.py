"""The kit for APIs that receive m2mauth access tokens: verify them, offline or by introspection.

Importing this package needs pyjwt and cryptography only. The integrations live
in submodules that import their framework themselves:

* ``m2mauth.verify.grpc_interceptor``: ``TokenAuthInterceptor`` (grpc.server) and
  ``AsyncTokenAuthInterceptor`` (grpc.aio.server); needs grpcio;
* ``m2mauth.verify.asgi``: ``BearerAuthMiddleware`` for Starlette or any ASGI app.

    verifier = TokenVerifier(
        issuer="https://auth.example.com",
        audience="https://api.example.com",
        jwks_url="https://auth.example.com/oauth2/jwks",
    )
    token = verifier.verify(raw)          # or: await verifier.averify(raw)
    token.require_scopes("projects:read")
    rows = db.projects(org_id=token.org_id)
"""

from m2mauth.verify.context import (
    current_org_id,
    current_token,
    require_scopes,
    token_context,
)
from m2mauth.verify.errors import (
    AccessDenied,
    InsufficientScope,
    IntrospectionUnavailable,
    InvalidRequest,
    InvalidToken,
    JwksUnavailable,
    MissingToken,
    TokenError,
    VerifierUnavailable,
    WrongOrganization,
)
from m2mauth.verify.introspection import IntrospectionClient
from m2mauth.verify.jwks import (
    DEFAULT_ALGORITHMS,
    HttpJwksSource,
    JwksCache,
    JwksDocument,
    JwksSource,
    StaticJwksSource,
)
from m2mauth.verify.tokens import REQUIRED_CLAIMS, VerifiedToken
from m2mauth.verify.verifier import MAX_LEEWAY_SECONDS, TokenVerifier

__all__ = [
    "DEFAULT_ALGORITHMS",
    "MAX_LEEWAY_SECONDS",
    "REQUIRED_CLAIMS",
    "AccessDenied",
    "HttpJwksSource",
    "InsufficientScope",
    "IntrospectionClient",
    "IntrospectionUnavailable",
    "InvalidRequest",
    "InvalidToken",
    "JwksCache",
    "JwksDocument",
    "JwksSource",
    "JwksUnavailable",
    "MissingToken",
    "StaticJwksSource",
    "TokenError",
    "TokenVerifier",
    "VerifiedToken",
    "VerifierUnavailable",
    "WrongOrganization",
    "current_org_id",
    "current_token",
    "require_scopes",
    "token_context",
]
