"""KeyService: list and rotate signing keys (environment admin key only)."""

from __future__ import annotations

import grpc

from m2mauth.core.admin_keys import AdminKeys
from m2mauth.core.key_management import SigningKeyAdmin
from m2mauth.core.models import SigningKey, SigningKeyState
from m2mauth.core.signing_keys import jwk_from_json
from m2mauth.grpc.auth import admin_principal
from m2mauth.grpc.convert import timestamp
from m2mauth.grpc.errors import translate_errors
from m2mauth.v1 import key_service_pb2 as key_pb
from m2mauth.v1 import key_service_pb2_grpc as key_grpc
from m2mauth.v1 import resources_pb2

ALGORITHM_TO_PROTO = {
    "RS256": resources_pb2.SIGNING_ALGORITHM_RS256,
    "ES256": resources_pb2.SIGNING_ALGORITHM_ES256,
    "EdDSA": resources_pb2.SIGNING_ALGORITHM_EDDSA,
}
ALGORITHM_FROM_PROTO = {value: name for name, value in ALGORITHM_TO_PROTO.items()}
STATE_TO_PROTO = {
    SigningKeyState.NEXT: resources_pb2.SIGNING_KEY_STATE_NEXT,
    SigningKeyState.CURRENT: resources_pb2.SIGNING_KEY_STATE_CURRENT,
    SigningKeyState.PREVIOUS: resources_pb2.SIGNING_KEY_STATE_PREVIOUS,
    SigningKeyState.RETIRED: resources_pb2.SIGNING_KEY_STATE_RETIRED,
}
_JWK_FIELDS = ("kty", "kid", "alg", "use", "n", "e", "crv", "x", "y")


def signing_key(key: SigningKey) -> resources_pb2.SigningKey:
    """A key record as the API shows it: public half only, never the ciphertext."""
    jwk = jwk_from_json(key.public_jwk)
    return resources_pb2.SigningKey(
        id=key.id,
        algorithm=ALGORITHM_TO_PROTO.get(
            key.algorithm, resources_pb2.SIGNING_ALGORITHM_UNSPECIFIED
        ),
        state=STATE_TO_PROTO[key.state],
        create_time=timestamp(key.created_at),
        activate_time=timestamp(key.activated_at),
        deactivate_time=timestamp(key.deactivated_at),
        retire_time=timestamp(key.retire_at),
        public_key=resources_pb2.Jwk(
            **{name: str(jwk[name]) for name in _JWK_FIELDS if name in jwk}
        ),
    )


class KeyServicer(key_grpc.KeyServiceServicer):
    def __init__(self, keys: SigningKeyAdmin, admin_keys: AdminKeys) -> None:
        self._keys = keys
        self._admin_keys = admin_keys

    @translate_errors
    def ListSigningKeys(
        self, request: key_pb.ListSigningKeysRequest, context: grpc.ServicerContext
    ) -> key_pb.ListSigningKeysResponse:
        principal = admin_principal(self._admin_keys, context)
        page = self._keys.list(
            principal, request.page_size, request.page_token, request.show_retired
        )
        return key_pb.ListSigningKeysResponse(
            signing_keys=[signing_key(k) for k in page.items],
            next_page_token=page.next_page_token,
        )

    @translate_errors
    def RotateSigningKey(
        self, request: key_pb.RotateSigningKeyRequest, context: grpc.ServicerContext
    ) -> key_pb.RotateSigningKeyResponse:
        principal = admin_principal(self._admin_keys, context)
        algorithm = ALGORITHM_FROM_PROTO.get(request.algorithm)
        if request.algorithm and algorithm is None:
            # An enum number this server does not know (a newer client).
            algorithm = f"unknown({request.algorithm})"
        current, nxt, _ = self._keys.rotate(principal, algorithm, now=request.now)
        return key_pb.RotateSigningKeyResponse(
            current_key=signing_key(current), next_key=signing_key(nxt)
        )
