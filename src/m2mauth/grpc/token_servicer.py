"""TokenService: issue, introspect, revoke, JWKS. Parse, call the core, map back.

Introspect and RevokeToken authenticate the caller by the request's client
credentials (a secret or a client assertion) when it carries any (RFC 7662
section 2.1, RFC 7009 section 2.1), otherwise by the admin key in the
``authorization`` metadata.
"""

from __future__ import annotations

import grpc

from m2mauth.core.admin_keys import AdminKeys
from m2mauth.core.introspection import Caller
from m2mauth.core.token_request import ClientCredentials, TokenRequest
from m2mauth.core.tokens import INTROSPECT_FAILED, REVOKE_FAILED, TokenComponents
from m2mauth.grpc.auth import admin_principal, peer_address
from m2mauth.grpc.errors import translate_errors
from m2mauth.v1 import resources_pb2
from m2mauth.v1 import token_service_pb2 as token_pb
from m2mauth.v1 import token_service_pb2_grpc as token_grpc


def _credentials(
    request: token_pb.IssueTokenRequest | token_pb.IntrospectRequest | token_pb.RevokeTokenRequest,
) -> ClientCredentials:
    """What the caller presented: a client secret or a client assertion (RFC 7523)."""
    return ClientCredentials(
        request.client_id,
        request.client_secret,
        request.client_assertion_type,
        request.client_assertion,
    )


class TokenServicer(token_grpc.TokenServiceServicer):
    def __init__(self, components: TokenComponents, admin_keys: AdminKeys) -> None:
        self._tokens = components
        self._admin_keys = admin_keys

    def _caller(
        self, credentials: ClientCredentials, action: str, context: grpc.ServicerContext
    ) -> Caller:
        return self._tokens.caller(
            credentials,
            action,
            peer_address(context),
            lambda: admin_principal(self._admin_keys, context),
        )

    @translate_errors
    def IssueToken(
        self, request: token_pb.IssueTokenRequest, context: grpc.ServicerContext
    ) -> token_pb.IssueTokenResponse:
        issued = self._tokens.issue_token(
            TokenRequest(
                grant_type=request.grant_type,
                credentials=_credentials(request),
                scope=request.scope,
                audience=request.audience,
                source=peer_address(context),
            )
        )
        return token_pb.IssueTokenResponse(
            access_token=issued.access_token,
            token_type=issued.token_type,
            expires_in=issued.expires_in,
            scope=issued.scope,
        )

    @translate_errors
    def Introspect(
        self, request: token_pb.IntrospectRequest, context: grpc.ServicerContext
    ) -> token_pb.IntrospectResponse:
        credentials = _credentials(request)
        caller = self._caller(credentials, INTROSPECT_FAILED, context)
        answer = self._tokens.introspect(request.token, caller)
        if not answer["active"]:
            # RFC 7662 section 2.2: an inactive token says nothing more.
            return token_pb.IntrospectResponse(active=False)
        return token_pb.IntrospectResponse(
            active=True,
            scope=answer["scope"],
            client_id=answer["client_id"],
            token_type=answer["token_type"],
            exp=answer["exp"],
            iat=answer["iat"],
            sub=answer["sub"],
            aud=answer["aud"],
            iss=answer["iss"],
            jti=answer["jti"],
            org_id=answer["org_id"],
        )

    @translate_errors
    def RevokeToken(
        self, request: token_pb.RevokeTokenRequest, context: grpc.ServicerContext
    ) -> token_pb.RevokeTokenResponse:
        credentials = _credentials(request)
        caller = self._caller(credentials, REVOKE_FAILED, context)
        self._tokens.revoke(request.token, caller)
        return token_pb.RevokeTokenResponse()

    @translate_errors
    def GetJwks(
        self, request: token_pb.GetJwksRequest, context: grpc.ServicerContext
    ) -> token_pb.GetJwksResponse:
        return token_pb.GetJwksResponse(
            keys=[resources_pb2.Jwk(**jwk) for jwk in self._tokens.jwks()],
            max_age_seconds=self._tokens.jwks_max_age_seconds,
            issuer=self._tokens.policy.issuer,
        )
