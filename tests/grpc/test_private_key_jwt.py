"""private_key_jwt over gRPC: an application set up with the management API
(token_endpoint_auth_method + jwks) gets tokens with IssueToken's
client_assertion fields; failures are UNAUTHENTICATED with ErrorInfo
INVALID_CLIENT, bad JWK Sets INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import json

import grpc
from google.protobuf import field_mask_pb2

from m2mauth.bootstrap import App
from m2mauth.core.private_key_jwt import JWT_BEARER_ASSERTION_TYPE
from m2mauth.v1 import application_service_pb2 as app_pb
from m2mauth.v1 import audit_service_pb2 as audit_pb
from m2mauth.v1 import resources_pb2 as res
from m2mauth.v1 import token_service_pb2 as token_pb
from tests.assertions import assertion, jwks_of, new_key
from tests.grpc.conftest import Stubs, bearer
from tests.grpc.test_management import create_app, create_org, fails

PRIVATE_KEY_JWT = res.TOKEN_ENDPOINT_AUTH_METHOD_PRIVATE_KEY_JWT
CLIENT_SECRET = res.TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET


def token_endpoint(container: App) -> str:
    return container.tokens.policy.token_endpoint_url


def issue_with(stubs: Stubs, client_assertion: str, **fields: str) -> token_pb.IssueTokenResponse:
    response: token_pb.IssueTokenResponse = stubs.tokens.IssueToken(
        token_pb.IssueTokenRequest(
            grant_type="client_credentials",
            client_assertion_type=JWT_BEARER_ASSERTION_TYPE,
            client_assertion=client_assertion,
            **fields,
        )
    )
    return response


def update(stubs: Stubs, key: str, app: res.Application, *paths: str) -> res.Application:
    updated: res.Application = stubs.apps.UpdateApplication(
        app_pb.UpdateApplicationRequest(
            application=app, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        ),
        metadata=bearer(key),
    ).application
    return updated


def test_a_keyed_application_created_over_grpc_gets_tokens(
    stubs: Stubs, admin_key: str, container: App
) -> None:
    key = new_key("ES256")
    org = create_org(stubs, admin_key)
    app = create_app(
        stubs, admin_key, org.id, token_endpoint_auth_method=PRIVATE_KEY_JWT, jwks=jwks_of(key)
    )
    assert app.token_endpoint_auth_method == PRIVATE_KEY_JWT
    assert json.loads(app.jwks)["keys"][0]["kid"] == key.kid
    fetched = stubs.apps.GetApplication(
        app_pb.GetApplicationRequest(id=app.id), metadata=bearer(admin_key)
    ).application
    assert (fetched.token_endpoint_auth_method, fetched.jwks) == (PRIVATE_KEY_JWT, app.jwks)
    signed = assertion(key, app.client_id, token_endpoint(container))
    issued = issue_with(stubs, signed, client_id=app.client_id)
    assert issued.token_type == "Bearer"
    # Replayed: UNAUTHENTICATED, INVALID_CLIENT, the assertion nowhere in the answer.
    err = fails(issue_with, stubs, signed)
    assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CLIENT")
    assert signed not in err.message
    assert "replay" not in err.message


def test_an_existing_application_switches_to_keys_and_back(
    stubs: Stubs, admin_key: str, container: App
) -> None:
    key = new_key("RS256")
    org = create_org(stubs, admin_key)
    app = create_app(stubs, admin_key, org.id)
    assert app.token_endpoint_auth_method == CLIENT_SECRET
    app.token_endpoint_auth_method = PRIVATE_KEY_JWT
    app.jwks = jwks_of(key)
    keyed = update(stubs, admin_key, app, "token_endpoint_auth_method", "jwks")
    assert keyed.token_endpoint_auth_method == PRIVATE_KEY_JWT
    assert issue_with(stubs, assertion(key, app.client_id, container.tokens.policy.issuer))
    # Back to secrets without clearing the JWK Set: refused, naming the field.
    keyed.token_endpoint_auth_method = CLIENT_SECRET
    err = fails(update, stubs, admin_key, keyed, "token_endpoint_auth_method")
    assert (err.code, err.reason, err.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
        ["application.jwks"],
    )
    keyed.jwks = ""
    back = update(stubs, admin_key, keyed, "token_endpoint_auth_method", "jwks")
    assert (back.token_endpoint_auth_method, back.jwks) == (CLIENT_SECRET, "")
    err = fails(issue_with, stubs, assertion(key, app.client_id, token_endpoint(container)))
    assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CLIENT")
    # Audited like every application change, with no key material.
    events = stubs.audit.ListAuditEvents(
        audit_pb.ListAuditEventsRequest(application_id=app.id), metadata=bearer(admin_key)
    ).audit_events
    updates = [e for e in events if e.action == "application.update"]
    assert len(updates) == 2
    assert json.loads(app.jwks)["keys"][0]["n"] not in str(events)


def test_a_private_key_in_the_jwks_is_invalid_argument_and_not_echoed(
    stubs: Stubs, admin_key: str
) -> None:
    key = new_key("ES256")
    private_jwk = {**key.public_jwk, "d": "c2VjcmV0LXByaXZhdGUtc2NhbGFyLWJ5dGVz"}
    org = create_org(stubs, admin_key)
    err = fails(
        create_app,
        stubs,
        admin_key,
        org.id,
        token_endpoint_auth_method=PRIVATE_KEY_JWT,
        jwks=json.dumps({"keys": [private_jwk]}),
    )
    assert (err.code, err.reason, err.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
        ["application.jwks"],
    )
    assert private_jwk["d"] not in err.message
    err = fails(create_app, stubs, admin_key, org.id, token_endpoint_auth_method=7)
    assert err.fields == ["application.token_endpoint_auth_method"]


def test_a_keyed_application_introspects_and_revokes_with_assertions(
    stubs: Stubs, admin_key: str, container: App
) -> None:
    key = new_key("EdDSA")
    org = create_org(stubs, admin_key)
    app = create_app(
        stubs, admin_key, org.id, token_endpoint_auth_method=PRIVATE_KEY_JWT, jwks=jwks_of(key)
    )
    issuer = container.tokens.policy.issuer
    token = issue_with(stubs, assertion(key, app.client_id, issuer)).access_token

    def credentials() -> dict[str, str]:
        return {
            "client_assertion_type": JWT_BEARER_ASSERTION_TYPE,
            "client_assertion": assertion(key, app.client_id, issuer),
        }

    seen = stubs.tokens.Introspect(token_pb.IntrospectRequest(token=token, **credentials()))
    assert (seen.active, seen.org_id) == (True, org.id)
    stubs.tokens.RevokeToken(token_pb.RevokeTokenRequest(token=token, **credentials()))
    assert not stubs.tokens.Introspect(
        token_pb.IntrospectRequest(token=token, **credentials())
    ).active
    # A replayed assertion is refused here too.
    once = credentials()
    stubs.tokens.Introspect(token_pb.IntrospectRequest(token=token, **once))
    err = fails(stubs.tokens.Introspect, token_pb.IntrospectRequest(token=token, **once))
    assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CLIENT")


def test_federated_credentials_over_the_api(stubs: Stubs, admin_key: str) -> None:
    org = create_org(stubs, admin_key)
    trusted = res.FederatedCredential(
        issuer="https://token.actions.githubusercontent.com",
        subject="repo:acme/billing:*",
        audience="m2mauth",
    )
    app = create_app(
        stubs,
        admin_key,
        org.id,
        token_endpoint_auth_method=res.TOKEN_ENDPOINT_AUTH_METHOD_FEDERATED,
        federated_credentials=[trusted],
    )
    assert app.token_endpoint_auth_method == res.TOKEN_ENDPOINT_AUTH_METHOD_FEDERATED
    assert list(app.federated_credentials) == [trusted]
    app.federated_credentials.append(
        res.FederatedCredential(issuer="https://oidc.example.test", subject="*", audience="x")
    )
    err = fails(update, stubs, admin_key, app, "federated_credentials")
    assert (err.code, err.reason, err.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
        ["application.federated_credentials[1].subject"],
    )
