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


def peer_address(context: grpc.ServicerContext) -> str:
    """The caller's address without its port, from gRPC's peer string
    ("ipv4:127.0.0.1:50000", "ipv6:[::1]:50000", "unix:..."), for the audit log."""
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rpartition(":")[0]
        return host.strip("[]")
    return peer


def admin_principal(admin_keys: AdminKeys, context: grpc.ServicerContext) -> Principal:
    """Authenticate the admin key in the metadata or raise AdminKeyInvalid."""
    return admin_keys.authenticate(bearer_token(context), peer_address(context))
