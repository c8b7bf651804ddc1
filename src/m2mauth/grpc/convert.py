"""Domain records <-> protobuf messages. Pure functions, no policy."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from m2mauth.core import applications, models
from m2mauth.core.errors import InvalidField
from m2mauth.v1 import resources_pb2


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def to_datetime(field: str, ts: timestamp_pb2.Timestamp) -> datetime:
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidField(field, "is not a valid timestamp") from exc


def optional_datetime(field: str, message: Message, name: str) -> datetime | None:
    """``message.name`` as a datetime, or None when the field is unset (proto3
    message fields have presence, so "unset" and "the epoch" differ)."""
    if not message.HasField(name):
        return None
    return to_datetime(field, getattr(message, name))


def organization(org: models.Organization) -> resources_pb2.Organization:
    return resources_pb2.Organization(
        id=org.id,
        name=org.name,
        external_id=org.external_id or "",
        enabled=org.enabled,
        create_time=timestamp(org.created_at),
        update_time=timestamp(org.updated_at),
    )


def application(app: models.Application) -> resources_pb2.Application:
    return resources_pb2.Application(
        id=app.id,
        client_id=app.client_id,
        organization_id=app.organization_id,
        name=app.name,
        description=app.description,
        scopes=list(app.scopes),
        audiences=list(app.audiences),
        token_ttl_seconds=app.token_ttl_seconds,
        token_quota_per_minute=app.token_quota_per_minute,
        enabled=app.enabled,
        create_time=timestamp(app.created_at),
        update_time=timestamp(app.updated_at),
        token_endpoint_auth_method=AUTH_METHODS[app.token_endpoint_auth_method],
        jwks=app.jwks,
        jwks_uri=app.jwks_uri,
        federated_credentials=[
            resources_pb2.FederatedCredential(
                issuer=c.issuer, subject=c.subject, audience=c.audience
            )
            for c in app.federated_credentials
        ],
        etag=applications.etag(app),
    )


AUTH_METHODS: dict[
    models.TokenEndpointAuthMethod, resources_pb2.TokenEndpointAuthMethod.ValueType
] = {
    models.TokenEndpointAuthMethod.CLIENT_SECRET: (
        resources_pb2.TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET
    ),
    models.TokenEndpointAuthMethod.PRIVATE_KEY_JWT: (
        resources_pb2.TOKEN_ENDPOINT_AUTH_METHOD_PRIVATE_KEY_JWT
    ),
    models.TokenEndpointAuthMethod.FEDERATED: resources_pb2.TOKEN_ENDPOINT_AUTH_METHOD_FEDERATED,
}


def auth_method(
    value: resources_pb2.TokenEndpointAuthMethod.ValueType,
) -> models.TokenEndpointAuthMethod | None:
    """The method a request names; None for UNSPECIFIED (client_secret applies)."""
    if value == resources_pb2.TOKEN_ENDPOINT_AUTH_METHOD_UNSPECIFIED:
        return None
    for method, number in AUTH_METHODS.items():
        if number == value:
            return method
    raise InvalidField("application.token_endpoint_auth_method", f"unknown method {value}")


def client_secret(secret: models.ClientSecret) -> resources_pb2.ClientSecret:
    # Deliberately no hash and no plaintext: only the hint leaves the server.
    return resources_pb2.ClientSecret(
        id=secret.id,
        application_id=secret.application_id,
        secret_hint=secret.hint,
        create_time=timestamp(secret.created_at),
        last_used_time=timestamp(secret.last_used_at),
        expire_time=timestamp(secret.expires_at),
    )


def audit_event(evt: models.AuditEvent) -> resources_pb2.AuditEvent:
    return resources_pb2.AuditEvent(
        id=evt.id,
        time=timestamp(evt.time),
        actor=evt.actor,
        action=evt.action,
        organization_id=evt.organization_id or "",
        application_id=evt.application_id or "",
        target=evt.target or "",
        details=evt.details,
    )


ADMIN_KEY_ROLES: dict[models.AdminKeyRole, resources_pb2.AdminKeyRole.ValueType] = {
    models.AdminKeyRole.ADMIN: resources_pb2.ADMIN_KEY_ROLE_ADMIN,
    models.AdminKeyRole.TOKEN_VERIFIER: resources_pb2.ADMIN_KEY_ROLE_TOKEN_VERIFIER,
    models.AdminKeyRole.AUDITOR: resources_pb2.ADMIN_KEY_ROLE_AUDITOR,
}


def admin_key_role(value: resources_pb2.AdminKeyRole.ValueType) -> models.AdminKeyRole | None:
    """The role a request names; None for UNSPECIFIED (the default applies)."""
    if value == resources_pb2.ADMIN_KEY_ROLE_UNSPECIFIED:
        return None
    for role, number in ADMIN_KEY_ROLES.items():
        if number == value:
            return role
    raise InvalidField("admin_key.role", f"unknown role {value}")


def admin_key(key: models.AdminKey) -> resources_pb2.AdminKey:
    # Deliberately no hash and no key: only the hint leaves the server.
    return resources_pb2.AdminKey(
        id=key.id,
        name=key.name,
        organization_id=key.organization_id or "",
        role=ADMIN_KEY_ROLES[key.role],
        expire_time=timestamp(key.expires_at),
        key_hint=key.hint,
        created_by=key.created_by,
        create_time=timestamp(key.created_at),
        last_used_time=timestamp(key.last_used_at),
        revoke_time=timestamp(key.revoked_at),
    )
