"""Reading credentials from gRPC metadata."""

from __future__ import annotations

import grpc

from m2mauth.core.admin_keys import AdminKeys
from m2mauth.core.models import Principal


def bearer_token(context: grpc.ServicerContext) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry (RFC 6750 §2.1)."""
    for key, value in context.invocation_metadata():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def admin_principal(admin_keys: AdminKeys, context: grpc.ServicerContext) -> Principal:
    """Authenticate the admin key in the metadata or raise AdminKeyInvalid."""
    return admin_keys.authenticate(bearer_token(context))
