"""What the load needs, made through the management API like any operator would:
an organization, an application with a scope, a client secret, and one token;
and a second application that authenticates with a key (private_key_jwt)."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric import ec

from bench.server import BenchError, RunningServer
from m2mauth.core.jws import CompactSigner
from m2mauth.core.signing_keys import public_jwk
from m2mauth.v1 import application_service_pb2 as app_pb
from m2mauth.v1 import application_service_pb2_grpc as app_grpc
from m2mauth.v1 import organization_service_pb2 as org_pb
from m2mauth.v1 import organization_service_pb2_grpc as org_grpc
from m2mauth.v1 import resources_pb2 as res
from m2mauth.v1 import token_service_pb2 as token_pb
from m2mauth.v1 import token_service_pb2_grpc as token_grpc

SCOPE = "bench:read"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 300
KID = "bench-key-1"


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


@dataclass(frozen=True, slots=True)
class KeyedClient:
    """An application that proves itself with a key (RFC 7523 section 2.2)."""

    client_id: str
    signer: CompactSigner
    audience: str  # the token endpoint URL (RFC 7523 section 3, item 3)

    def form(self) -> str:
        """One token request with a fresh, single-use assertion."""
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.audience,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
            "jti": uuid.uuid4().hex,
        }
        return urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.signer.sign(claims),
            }
        )

    def write_forms(self, path: Path, count: int) -> Path:
        """``count`` request bodies, one per line: each assertion is used once (its
        jti is then refused), so the load generator takes a new line per request."""
        with path.open("w") as out:
            for _ in range(count):
                out.write(self.form() + "\n")
        return path


def provision_keyed(server: RunningServer) -> KeyedClient:
    """An ES256 key pair made here, the application holding its public JWK Set."""
    metadata = [("authorization", f"Bearer {server.admin_key}")]
    key = ec.generate_private_key(ec.SECP256R1())
    jwks = json.dumps({"keys": [public_jwk(KID, "ES256", key.public_key())]})
    with grpc.insecure_channel(server.grpc_target) as channel:
        org = (
            org_grpc.OrganizationServiceStub(channel)
            .CreateOrganization(
                org_pb.CreateOrganizationRequest(
                    organization=res.Organization(name="Keyed Corp", external_id="bench-keyed")
                ),
                metadata=metadata,
                timeout=30,
            )
            .organization
        )
        app = (
            app_grpc.ApplicationServiceStub(channel)
            .CreateApplication(
                app_pb.CreateApplicationRequest(
                    application=res.Application(
                        organization_id=org.id,
                        name="bench-keyed-client",
                        scopes=[SCOPE],
                        token_endpoint_auth_method=res.TOKEN_ENDPOINT_AUTH_METHOD_PRIVATE_KEY_JWT,
                        jwks=jwks,
                    )
                ),
                metadata=metadata,
                timeout=30,
            )
            .application
        )
    signer = CompactSigner(KID, "ES256", key)
    client = KeyedClient(app.client_id, signer, f"{server.http_url}/oauth2/token")
    _check_keyed(server, client)
    return client


def _check_keyed(server: RunningServer, client: KeyedClient) -> None:
    request = urllib.request.Request(  # noqa: S310 - our own http:// URL
        f"{server.http_url}/oauth2/token",
        data=client.form().encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        answer = exc.read()[:300]
        raise BenchError(f"private_key_jwt: POST /oauth2/token: {exc.code} {answer!r}") from exc
    if "access_token" not in body:
        raise BenchError(f"private_key_jwt: POST /oauth2/token answered {body}")
