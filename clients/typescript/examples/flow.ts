// The whole flow against a running m2mauth, over gRPC: create an organization,
// an application and a secret with an admin key; issue a token; verify it
// against GetJwks with jose; introspect; revoke; and decode a failure.
//
//   M2MAUTH_GRPC_URL=http://127.0.0.1:50051 M2MAUTH_ADMIN_KEY=... \
//   M2MAUTH_ISSUER=http://127.0.0.1:8080 node dist/examples/flow.js
//
// Prints one JSON object describing what happened (tests/interop reads it).
import { toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from "jose";

import {
  ErrorReason,
  GetJwksResponseSchema,
  decodeError,
  m2mauthClients,
  type M2mAuthError,
} from "../src/index.js";

function setting(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const baseUrl = setting("M2MAUTH_GRPC_URL");
const issuer = setting("M2MAUTH_ISSUER");
const admin = m2mauthClients({ baseUrl, adminKey: setting("M2MAUTH_ADMIN_KEY") });
// IssueToken and GetJwks need no admin key: a partner's service holds none.
const partner = m2mauthClients({ baseUrl });

// 1. Management, with the admin key. Messages are plain objects (camelCase
//    JSON names); Timestamps are messages, int64 fields are bigint.
const { organization } = await admin.organizations.createOrganization({
  organization: { name: "Example Partner (TypeScript)" },
});
if (!organization) throw new Error("no organization in the response");
const { application } = await admin.applications.createApplication({
  application: {
    organizationId: organization.id,
    name: "typescript-example",
    scopes: ["invoices:read"],
  },
});
if (!application) throw new Error("no application in the response");
const { secret } = await admin.applications.createClientSecret({ applicationId: application.id });

// 2. The client credentials grant (RFC 6749 section 4.4).
const issued = await partner.tokens.issueToken({
  grantType: "client_credentials",
  clientId: application.clientId,
  clientSecret: secret,
  scope: "invoices:read",
});

// 3. Verify as a resource server does (RFC 9068 section 4), with keys from
//    GetJwks: the proto Jwk's JSON form is a JWK.
const jwksResponse = await partner.tokens.getJwks({});
const jwks = toJson(GetJwksResponseSchema, jwksResponse, {
  useProtoFieldName: true,
}) as unknown as JSONWebKeySet;
const { payload, protectedHeader } = await jwtVerify(issued.accessToken, createLocalJWKSet(jwks), {
  typ: "at+jwt",
  issuer,
  audience: issuer,
  requiredClaims: ["exp", "iat", "jti", "sub", "client_id"],
});

// 4. Introspection (RFC 7662) with the application's own credentials.
const credentials = { clientId: application.clientId, clientSecret: secret };
const before = await partner.tokens.introspect({ token: issued.accessToken, ...credentials });

// 5. Revocation (RFC 7009), then introspection again.
await partner.tokens.revokeToken({ token: issued.accessToken, ...credentials });
const after = await partner.tokens.introspect({ token: issued.accessToken, ...credentials });

// 6. Failures, decoded: a wrong secret, and a field the server refuses.
async function failure(call: () => Promise<unknown>): Promise<M2mAuthError> {
  try {
    await call();
  } catch (err) {
    const decoded = decodeError(err);
    if (decoded) return decoded;
    throw err;
  }
  throw new Error("the call succeeded");
}
const wrongSecret = await failure(() =>
  partner.tokens.issueToken({
    grantType: "client_credentials",
    clientId: application.clientId,
    clientSecret: `${secret}x`,
  }),
);
const badField = await failure(() =>
  admin.organizations.createOrganization({ organization: { name: "" } }),
);

function describe(error: M2mAuthError) {
  return {
    code: Code[error.code],
    reason: ErrorReason[error.reason],
    wire_reason: error.wireReason,
    fields: error.fieldViolations.map((v) => v.field),
  };
}

process.stdout.write(
  JSON.stringify({
    organization_id: organization.id,
    organization_created: timestampDate(organization.createTime!).toISOString(),
    client_id: application.clientId,
    token_type: issued.tokenType,
    expires_in: Number(issued.expiresIn), // int64 arrives as bigint
    header: protectedHeader,
    claims: payload,
    introspection_before: { active: before.active, org_id: before.orgId, jti: before.jti },
    introspection_after: { active: after.active },
    wrong_secret: describe(wrongSecret),
    bad_field: describe(badField),
  }),
);
