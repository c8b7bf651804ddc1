// Admin-key authentication: management calls, and Introspect/RevokeToken on
// behalf of any application, carry `authorization: Bearer <admin key>`.
import type { Interceptor } from "@connectrpc/connect";

/** An interceptor that sends the admin key with every call of a transport. */
export function adminKey(key: string): Interceptor {
  return (next) => async (request) => {
    request.header.set("authorization", `Bearer ${key}`);
    return next(request);
  };
}

/** The same header for a single call: `client.getOrganization(req, { headers: bearer(key) })`. */
export function bearer(key: string): HeadersInit {
  return { authorization: `Bearer ${key}` };
}
