// @m2mauth/client: Connect clients for m2mauth's gRPC services, generated from
// protos/ (src/gen, never edited), plus admin-key auth and error decoding.
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { ApplicationService } from "./gen/m2mauth/v1/application_service_pb.js";
import { AuditService } from "./gen/m2mauth/v1/audit_service_pb.js";
import { KeyService } from "./gen/m2mauth/v1/key_service_pb.js";
import { OrganizationService } from "./gen/m2mauth/v1/organization_service_pb.js";
import { TokenService } from "./gen/m2mauth/v1/token_service_pb.js";
import { adminKey } from "./auth.js";

export * from "./auth.js";
export * from "./errors.js";
export * from "./gen/m2mauth/v1/application_service_pb.js";
export * from "./gen/m2mauth/v1/audit_service_pb.js";
export * from "./gen/m2mauth/v1/errors_pb.js";
export * from "./gen/m2mauth/v1/key_service_pb.js";
export * from "./gen/m2mauth/v1/organization_service_pb.js";
export * from "./gen/m2mauth/v1/resources_pb.js";
export * from "./gen/m2mauth/v1/token_service_pb.js";

export interface ConnectOptions {
  /** e.g. "http://127.0.0.1:50051" (h2c) or "https://auth.example.com". */
  baseUrl: string;
  /** Sent as `authorization: Bearer <key>` on every call when set. */
  adminKey?: string;
}

export interface M2mAuthClients {
  tokens: Client<typeof TokenService>;
  organizations: Client<typeof OrganizationService>;
  applications: Client<typeof ApplicationService>;
  keys: Client<typeof KeyService>;
  audit: Client<typeof AuditService>;
}

/** A gRPC (HTTP/2) transport to m2mauth. */
export function m2mauthTransport(options: ConnectOptions): Transport {
  const interceptors: Interceptor[] = options.adminKey ? [adminKey(options.adminKey)] : [];
  return createGrpcTransport({ baseUrl: options.baseUrl, interceptors });
}

/** One client per service, sharing one transport. */
export function m2mauthClients(options: ConnectOptions | Transport): M2mAuthClients {
  const transport = "baseUrl" in options ? m2mauthTransport(options) : options;
  return {
    tokens: createClient(TokenService, transport),
    organizations: createClient(OrganizationService, transport),
    applications: createClient(ApplicationService, transport),
    keys: createClient(KeyService, transport),
    audit: createClient(AuditService, transport),
  };
}
