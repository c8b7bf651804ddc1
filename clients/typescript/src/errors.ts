// m2mauth's error contract (protos/m2mauth/v1/errors.proto): every error is a
// google.rpc.Status whose details hold an ErrorInfo with domain "m2mauth" and
// a reason that is an ErrorReason value's proto name without "ERROR_REASON_",
// plus a BadRequest when a field is to blame. Branch on `reason`, never on
// the message.
import { Code, ConnectError } from "@connectrpc/connect";

import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import { ErrorReason, ErrorReasonSchema } from "./gen/m2mauth/v1/errors_pb.js";

export const ERROR_DOMAIN = "m2mauth";

export interface FieldViolation {
  field: string;
  description: string;
}

export interface M2mAuthError {
  /** The gRPC status code. */
  code: Code;
  /** For people and logs only. */
  message: string;
  /** The reason as an enum value; UNSPECIFIED when the server is newer than this client. */
  reason: ErrorReason;
  /** The reason exactly as sent, e.g. "INVALID_CLIENT". */
  wireReason: string;
  metadata: Record<string, string>;
  fieldViolations: FieldViolation[];
}

/** "INVALID_CLIENT" -> ErrorReason.INVALID_CLIENT, by the proto name "ERROR_REASON_" + reason. */
export function reasonFromWire(reason: string): ErrorReason {
  const value = ErrorReasonSchema.values.find((v) => v.name === `ERROR_REASON_${reason}`);
  return value === undefined ? ErrorReason.UNSPECIFIED : (value.number as ErrorReason);
}

/**
 * The m2mauth error in `err` (as thrown by a Connect client), or undefined
 * when it carries no m2mauth ErrorInfo (a transport failure, another server).
 */
export function decodeError(err: unknown): M2mAuthError | undefined {
  const connectError = ConnectError.from(err);
  const info = connectError
    .findDetails(ErrorInfoSchema)
    .find((detail) => detail.domain === ERROR_DOMAIN);
  if (info === undefined) return undefined;
  const fieldViolations = connectError
    .findDetails(BadRequestSchema)
    .flatMap((bad) =>
      bad.fieldViolations.map((v) => ({ field: v.field, description: v.description })),
    );
  return {
    code: connectError.code,
    message: connectError.rawMessage,
    reason: reasonFromWire(info.reason),
    wireReason: info.reason,
    metadata: { ...info.metadata },
    fieldViolations,
  };
}
