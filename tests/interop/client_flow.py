"""What every generated client's example program must report, checked against the server.

The examples (clients/typescript/examples/flow.ts, clients/go/examples/flow)
print one JSON object; :func:`check_flow` holds it to the server's own records,
so an example that skipped a step or misread a reply fails.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from m2mauth.core.models import Principal
from tests.interop.conftest import GrpcEndpoint

ENV = Principal(admin_key_id="ak_test", organization_id=None)


def check_flow(out: dict[str, Any], endpoint: GrpcEndpoint) -> None:
    container = endpoint.container
    # The organization and application exist, as the example says.
    organization = container.organizations.get(ENV, out["organization_id"])
    # create_time, a google.protobuf.Timestamp, read as the language's own time type.
    created = datetime.fromisoformat(out["organization_created"])
    assert abs(created - organization.created_at) < timedelta(milliseconds=1)
    (application,) = container.applications.list(ENV, organization.id, 0, "").items
    assert application.client_id == out["client_id"]

    # The token: issued by this server for this application, and verified by
    # the client against GetJwks (signature, typ, iss, aud).
    assert out["token_type"] == "Bearer"
    assert 0 < out["expires_in"] <= 3600
    assert out["header"]["typ"] == "at+jwt"
    assert out["header"]["kid"] in {k.id for k in container.tokens.ring.list_keys()}
    claims = out["claims"]
    assert claims["iss"] == endpoint.issuer
    assert claims["client_id"] == out["client_id"]
    assert claims["org_id"] == out["organization_id"]
    assert claims["scope"] == "invoices:read"

    # Introspection saw it active, then inactive after revocation (RFC 7662
    # section 2.2: inactive is only {"active": false}).
    assert out["introspection_before"] == {
        "active": True,
        "org_id": out["organization_id"],
        "jti": claims["jti"],
    }
    assert out["introspection_after"] == {"active": False}

    # Failures decoded from grpc-status-details-bin, the reason mapped to the enum.
    assert out["wrong_secret"] == {
        "code": "Unauthenticated",
        "reason": "INVALID_CLIENT",
        "wire_reason": "INVALID_CLIENT",
        "fields": [],
    }
    assert out["bad_field"] == {
        "code": "InvalidArgument",
        "reason": "INVALID_FIELD",
        "wire_reason": "INVALID_FIELD",
        "fields": ["organization.name"],
    }
