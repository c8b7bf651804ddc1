"""AdminKeyService: admin keys as a managed resource. Parse, call the core, map back;
who may do what is decided in the core (core/permissions.py)."""

from __future__ import annotations

import grpc

from m2mauth.core.admin_keys import AdminKeys
from m2mauth.grpc import convert
from m2mauth.grpc.auth import admin_principal
from m2mauth.grpc.errors import translate_errors
from m2mauth.v1 import admin_key_service_pb2 as pb
from m2mauth.v1 import admin_key_service_pb2_grpc as pb_grpc


class AdminKeyServicer(pb_grpc.AdminKeyServiceServicer):
    def __init__(self, admin_keys: AdminKeys) -> None:
        self._admin_keys = admin_keys

    @translate_errors
    def CreateAdminKey(
        self, request: pb.CreateAdminKeyRequest, context: grpc.ServicerContext
    ) -> pb.CreateAdminKeyResponse:
        principal = admin_principal(self._admin_keys, context)
        wanted = request.admin_key
        key, plaintext = self._admin_keys.create(
            principal,
            wanted.name,
            wanted.organization_id or None,
            convert.admin_key_role(wanted.role),
            convert.optional_datetime("admin_key.expire_time", wanted, "expire_time"),
        )
        return pb.CreateAdminKeyResponse(admin_key=convert.admin_key(key), key=plaintext)

    @translate_errors
    def GetAdminKey(
        self, request: pb.GetAdminKeyRequest, context: grpc.ServicerContext
    ) -> pb.GetAdminKeyResponse:
        principal = admin_principal(self._admin_keys, context)
        key = self._admin_keys.get(principal, request.id)
        return pb.GetAdminKeyResponse(admin_key=convert.admin_key(key))

    @translate_errors
    def ListAdminKeys(
        self, request: pb.ListAdminKeysRequest, context: grpc.ServicerContext
    ) -> pb.ListAdminKeysResponse:
        principal = admin_principal(self._admin_keys, context)
        page = self._admin_keys.list(
            principal,
            request.organization_id,
            request.show_revoked,
            request.page_size,
            request.page_token,
        )
        return pb.ListAdminKeysResponse(
            admin_keys=[convert.admin_key(k) for k in page.items],
            next_page_token=page.next_page_token,
        )

    @translate_errors
    def UpdateAdminKey(
        self, request: pb.UpdateAdminKeyRequest, context: grpc.ServicerContext
    ) -> pb.UpdateAdminKeyResponse:
        principal = admin_principal(self._admin_keys, context)
        wanted = request.admin_key
        key = self._admin_keys.update(
            principal,
            wanted.id,
            list(request.update_mask.paths),
            wanted.name,
            convert.optional_datetime("admin_key.expire_time", wanted, "expire_time"),
        )
        return pb.UpdateAdminKeyResponse(admin_key=convert.admin_key(key))

    @translate_errors
    def RevokeAdminKey(
        self, request: pb.RevokeAdminKeyRequest, context: grpc.ServicerContext
    ) -> pb.RevokeAdminKeyResponse:
        principal = admin_principal(self._admin_keys, context)
        key = self._admin_keys.revoke(principal, request.id)
        return pb.RevokeAdminKeyResponse(admin_key=convert.admin_key(key))
