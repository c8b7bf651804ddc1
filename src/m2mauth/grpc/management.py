"""Servicers of the management plane: organizations, applications, audit.

Each method authenticates the admin key, translates the request into one core
call and the result back; policy (tenancy, validation, audit) is in the core.
"""

from __future__ import annotations

import grpc

from m2mauth.core.admin_keys import AdminKeys
from m2mauth.core.applications import ApplicationFields, Applications
from m2mauth.core.audit import AuditReader
from m2mauth.core.models import AuditFilter, FederatedCredential
from m2mauth.core.organizations import Organizations
from m2mauth.grpc import convert
from m2mauth.grpc.auth import admin_principal
from m2mauth.grpc.errors import translate_errors
from m2mauth.v1 import (
    application_service_pb2 as app_pb,
)
from m2mauth.v1 import (
    application_service_pb2_grpc as app_grpc,
)
from m2mauth.v1 import (
    audit_service_pb2 as audit_pb,
)
from m2mauth.v1 import (
    audit_service_pb2_grpc as audit_grpc,
)
from m2mauth.v1 import (
    organization_service_pb2 as org_pb,
)
from m2mauth.v1 import (
    organization_service_pb2_grpc as org_grpc,
)
from m2mauth.v1 import resources_pb2


def _enabled(message: resources_pb2.Organization | resources_pb2.Application) -> bool | None:
    return message.enabled if message.HasField("enabled") else None


class OrganizationServicer(org_grpc.OrganizationServiceServicer):
    def __init__(self, organizations: Organizations, admin_keys: AdminKeys) -> None:
        self._organizations = organizations
        self._admin_keys = admin_keys

    @translate_errors
    def CreateOrganization(
        self, request: org_pb.CreateOrganizationRequest, context: grpc.ServicerContext
    ) -> org_pb.CreateOrganizationResponse:
        principal = admin_principal(self._admin_keys, context)
        o = request.organization
        org = self._organizations.create(principal, o.name, o.external_id, _enabled(o))
        return org_pb.CreateOrganizationResponse(organization=convert.organization(org))

    @translate_errors
    def GetOrganization(
        self, request: org_pb.GetOrganizationRequest, context: grpc.ServicerContext
    ) -> org_pb.GetOrganizationResponse:
        principal = admin_principal(self._admin_keys, context)
        org = self._organizations.get(principal, request.id)
        return org_pb.GetOrganizationResponse(organization=convert.organization(org))

    @translate_errors
    def ListOrganizations(
        self, request: org_pb.ListOrganizationsRequest, context: grpc.ServicerContext
    ) -> org_pb.ListOrganizationsResponse:
        principal = admin_principal(self._admin_keys, context)
        page = self._organizations.list(principal, request.page_size, request.page_token)
        return org_pb.ListOrganizationsResponse(
            organizations=[convert.organization(o) for o in page.items],
            next_page_token=page.next_page_token,
        )

    @translate_errors
    def UpdateOrganization(
        self, request: org_pb.UpdateOrganizationRequest, context: grpc.ServicerContext
    ) -> org_pb.UpdateOrganizationResponse:
        principal = admin_principal(self._admin_keys, context)
        o = request.organization
        org = self._organizations.update(
            principal,
            o.id,
            list(request.update_mask.paths),
            o.name,
            o.external_id,
            _enabled(o),
        )
        return org_pb.UpdateOrganizationResponse(organization=convert.organization(org))

    @translate_errors
    def DeleteOrganization(
        self, request: org_pb.DeleteOrganizationRequest, context: grpc.ServicerContext
    ) -> org_pb.DeleteOrganizationResponse:
        principal = admin_principal(self._admin_keys, context)
        self._organizations.delete(principal, request.id, request.force)
        return org_pb.DeleteOrganizationResponse()

    @translate_errors
    def RevokeOrganizationTokens(
        self, request: org_pb.RevokeOrganizationTokensRequest, context: grpc.ServicerContext
    ) -> org_pb.RevokeOrganizationTokensResponse:
        principal = admin_principal(self._admin_keys, context)
        when = self._organizations.revoke_tokens(principal, request.id)
        return org_pb.RevokeOrganizationTokensResponse(revoke_time=convert.timestamp(when))


def _fields(a: resources_pb2.Application) -> ApplicationFields:
    return ApplicationFields(
        name=a.name,
        description=a.description,
        scopes=list(a.scopes),
        audiences=list(a.audiences),
        token_ttl_seconds=a.token_ttl_seconds,
        token_quota_per_minute=a.token_quota_per_minute,
        enabled=_enabled(a),
        token_endpoint_auth_method=convert.auth_method(a.token_endpoint_auth_method),
        jwks=a.jwks,
        jwks_uri=a.jwks_uri,
        federated_credentials=[
            FederatedCredential(c.issuer, c.subject, c.audience) for c in a.federated_credentials
        ],
    )


class ApplicationServicer(app_grpc.ApplicationServiceServicer):
    def __init__(self, applications: Applications, admin_keys: AdminKeys) -> None:
        self._applications = applications
        self._admin_keys = admin_keys

    @translate_errors
    def CreateApplication(
        self, request: app_pb.CreateApplicationRequest, context: grpc.ServicerContext
    ) -> app_pb.CreateApplicationResponse:
        principal = admin_principal(self._admin_keys, context)
        a = request.application
        app = self._applications.create(principal, a.organization_id, _fields(a))
        return app_pb.CreateApplicationResponse(application=convert.application(app))

    @translate_errors
    def GetApplication(
        self, request: app_pb.GetApplicationRequest, context: grpc.ServicerContext
    ) -> app_pb.GetApplicationResponse:
        principal = admin_principal(self._admin_keys, context)
        app = self._applications.get(principal, request.id)
        return app_pb.GetApplicationResponse(application=convert.application(app))

    @translate_errors
    def ListApplications(
        self, request: app_pb.ListApplicationsRequest, context: grpc.ServicerContext
    ) -> app_pb.ListApplicationsResponse:
        principal = admin_principal(self._admin_keys, context)
        page = self._applications.list(
            principal, request.organization_id, request.page_size, request.page_token
        )
        return app_pb.ListApplicationsResponse(
            applications=[convert.application(a) for a in page.items],
            next_page_token=page.next_page_token,
        )

    @translate_errors
    def UpdateApplication(
        self, request: app_pb.UpdateApplicationRequest, context: grpc.ServicerContext
    ) -> app_pb.UpdateApplicationResponse:
        principal = admin_principal(self._admin_keys, context)
        a = request.application
        app = self._applications.update(
            principal, a.id, list(request.update_mask.paths), _fields(a), expected_etag=a.etag
        )
        return app_pb.UpdateApplicationResponse(application=convert.application(app))

    @translate_errors
    def DeleteApplication(
        self, request: app_pb.DeleteApplicationRequest, context: grpc.ServicerContext
    ) -> app_pb.DeleteApplicationResponse:
        principal = admin_principal(self._admin_keys, context)
        self._applications.delete(principal, request.id)
        return app_pb.DeleteApplicationResponse()

    @translate_errors
    def CreateClientSecret(
        self, request: app_pb.CreateClientSecretRequest, context: grpc.ServicerContext
    ) -> app_pb.CreateClientSecretResponse:
        principal = admin_principal(self._admin_keys, context)
        expires = convert.optional_datetime("expire_time", request, "expire_time")
        secret, plaintext = self._applications.create_secret(
            principal, request.application_id, expires
        )
        return app_pb.CreateClientSecretResponse(
            client_secret=convert.client_secret(secret), secret=plaintext
        )

    @translate_errors
    def ListClientSecrets(
        self, request: app_pb.ListClientSecretsRequest, context: grpc.ServicerContext
    ) -> app_pb.ListClientSecretsResponse:
        principal = admin_principal(self._admin_keys, context)
        secrets = self._applications.list_secrets(principal, request.application_id)
        return app_pb.ListClientSecretsResponse(
            client_secrets=[convert.client_secret(s) for s in secrets]
        )

    @translate_errors
    def RevokeClientSecret(
        self, request: app_pb.RevokeClientSecretRequest, context: grpc.ServicerContext
    ) -> app_pb.RevokeClientSecretResponse:
        principal = admin_principal(self._admin_keys, context)
        self._applications.revoke_secret(principal, request.application_id, request.id)
        return app_pb.RevokeClientSecretResponse()

    @translate_errors
    def RevokeApplicationTokens(
        self, request: app_pb.RevokeApplicationTokensRequest, context: grpc.ServicerContext
    ) -> app_pb.RevokeApplicationTokensResponse:
        principal = admin_principal(self._admin_keys, context)
        when = self._applications.revoke_tokens(principal, request.id)
        return app_pb.RevokeApplicationTokensResponse(revoke_time=convert.timestamp(when))

    @translate_errors
    def GetApplicationUsage(
        self, request: app_pb.GetApplicationUsageRequest, context: grpc.ServicerContext
    ) -> app_pb.GetApplicationUsageResponse:
        principal = admin_principal(self._admin_keys, context)
        last_used, daily = self._applications.usage(principal, request.id, request.days)
        return app_pb.GetApplicationUsageResponse(
            last_used_time=convert.timestamp(last_used),
            daily_tokens=[
                resources_pb2.DailyTokenCount(
                    date=day.day.isoformat(), tokens_issued=day.tokens_issued
                )
                for day in daily
            ],
        )


class AuditServicer(audit_grpc.AuditServiceServicer):
    def __init__(self, audit: AuditReader, admin_keys: AdminKeys) -> None:
        self._audit = audit
        self._admin_keys = admin_keys

    @translate_errors
    def ListAuditEvents(
        self, request: audit_pb.ListAuditEventsRequest, context: grpc.ServicerContext
    ) -> audit_pb.ListAuditEventsResponse:
        principal = admin_principal(self._admin_keys, context)
        flt = AuditFilter(
            organization_id=request.organization_id or None,
            application_id=request.application_id or None,
            start=convert.optional_datetime("start_time", request, "start_time"),
            end=convert.optional_datetime("end_time", request, "end_time"),
            action=request.action or None,
            actor=request.actor or None,
        )
        page = self._audit.list(principal, flt, request.page_size, request.page_token)
        return audit_pb.ListAuditEventsResponse(
            audit_events=[convert.audit_event(e) for e in page.items],
            next_page_token=page.next_page_token,
        )
