"""What the load needs, made through the management API like any operator would:
an organization, an application with a scope, a client secret, and one token."""

from __future__ import annotations

import base64
import json
import urllib.parse
import urllib.request
from dataclasses import dataclass

import grpc

from bench.server import BenchError, RunningServer
from m2mauth.v1 import application_service_pb2 as app_pb
from m2mauth.v1 import application_service_pb2_grpc as app_grpc
from m2mauth.v1 import organization_service_pb2 as org_pb
from m2mauth.v1 import organization_service_pb2_grpc as org_grpc
from m2mauth.v1 import resources_pb2 as res
from m2mauth.v1 import token_service_pb2 as token_pb
from m2mauth.v1 import token_service_pb2_grpc as token_grpc

SCOPE = "bench:read"


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    client_secret: str
    token: str  # a valid access token of this client, for introspection

    def basic_authorization(self) -> str:
        """RFC 6749 section 2.3.1: form-urlencode each part, then HTTP Basic."""
        pair = (
            f"{urllib.parse.quote_plus(self.client_id)}:"
            f"{urllib.parse.quote_plus(self.client_secret)}"
        )
        return "Basic " + base64.b64encode(pair.encode()).decode()


def provision(server: RunningServer) -> Client:
    metadata = [("authorization", f"Bearer {server.admin_key}")]
    with grpc.insecure_channel(server.grpc_target) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        org = (
            org_grpc.OrganizationServiceStub(channel)
            .CreateOrganization(
                org_pb.CreateOrganizationRequest(
                    organization=res.Organization(name="Bench Corp", external_id="bench")
                ),
                metadata=metadata,
                timeout=30,
            )
            .organization
        )
        apps = app_grpc.ApplicationServiceStub(channel)
        app = apps.CreateApplication(
            app_pb.CreateApplicationRequest(
                application=res.Application(
                    organization_id=org.id, name="bench-client", scopes=[SCOPE]
                )
            ),
            metadata=metadata,
            timeout=30,
        ).application
        secret = apps.CreateClientSecret(
            app_pb.CreateClientSecretRequest(application_id=app.id),
            metadata=metadata,
            timeout=30,
        ).secret
        issued = token_grpc.TokenServiceStub(channel).IssueToken(
            token_pb.IssueTokenRequest(
                grant_type="client_credentials", client_id=app.client_id, client_secret=secret
            ),
            timeout=30,
        )
    client = Client(app.client_id, secret, issued.access_token)
    _check_http(server, client)
    return client


def _check_http(server: RunningServer, client: Client) -> None:
    """One token over HTTP before any load: a broken setup fails here, clearly."""
    request = urllib.request.Request(  # noqa: S310 - our own http:// URL
        f"{server.http_url}/oauth2/token",
        data=b"grant_type=client_credentials",
        headers={
            "Authorization": client.basic_authorization(),
            "Content-Type": "application/x-www-form-urlencoded",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        body = json.loads(response.read())
    if response.status != 200 or "access_token" not in body:
        raise BenchError(f"POST /oauth2/token answered {response.status}: {body}")
