import type { ErrorCode, SluiceError } from '../../../shared/errors.js';

/** gRPC status codes the gateway answers with (grpc/doc/statuscodes.md). */
export const GRPC_STATUS = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  ABORTED: 10,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** Codes whose HTTP status would map to the wrong gRPC status. */
const BY_CODE: Partial<Record<ErrorCode, number>> = {
  // The response could not be made safe to send: a fault of the gateway's, not of a peer that is down.
  ERR_MASKING_BLOCKED: GRPC_STATUS.INTERNAL,
  ERR_REVIEW_ABANDONED: GRPC_STATUS.CANCELLED,
  // Nobody decided in time: to a gRPC client that is a deadline, not a permission it lacks.
  ERR_REVIEW_EXPIRED: GRPC_STATUS.DEADLINE_EXCEEDED,
  ERR_GRPC_METHOD_UNKNOWN: GRPC_STATUS.UNIMPLEMENTED,
};

/**
 * The gRPC status of a refusal or failure, so a gRPC client sees a status it understands (PERMISSION_DENIED,
 * not HTTP 403). Derived from the error table's HTTP status, which already sorts codes by kind.
 */
export function grpcStatusOf(error: SluiceError): number {
  const byCode = BY_CODE[error.code];
  if (byCode !== undefined) return byCode;
  switch (error.status) {
    case 400:
      return GRPC_STATUS.INVALID_ARGUMENT;
    case 401:
      return GRPC_STATUS.UNAUTHENTICATED;
    case 403:
      return GRPC_STATUS.PERMISSION_DENIED;
    case 404:
      return GRPC_STATUS.NOT_FOUND;
    case 409:
      return GRPC_STATUS.ABORTED;
    case 413:
    case 429:
      return GRPC_STATUS.RESOURCE_EXHAUSTED;
    case 502:
    case 503:
      return GRPC_STATUS.UNAVAILABLE;
    case 504:
      return GRPC_STATUS.DEADLINE_EXCEEDED;
    default:
      return GRPC_STATUS.INTERNAL;
  }
}

/** `grpc-message` as the protocol wants it: percent-encoded outside printable ASCII (and `%` itself). */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The trailers that end a call refused with `error`, carrying the request id like the headers of an HTTP refusal. */
export function refusalTrailers(error: SluiceError, requestId: string): Record<string, string> {
  return { 'grpc-status': String(grpcStatusOf(error)), 'grpc-message': encodeGrpcMessage(error.message), 'x-request-id': requestId };
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };

/** Milliseconds of a `grpc-timeout` header (`100m`, `5S`); undefined when absent or malformed. */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (m === null) return undefined;
  return Number(m[1]) * TIMEOUT_UNITS[m[2]!]!;
}

/** A `grpc-timeout` header of `ms` milliseconds (at least one, so a deadline never reads as none). */
export function formatGrpcTimeout(ms: number): string {
  const millis = Math.max(1, Math.ceil(ms));
  // The value has at most 8 digits: past about 27 hours, seconds.
  return millis <= 99_999_999 ? `${millis}m` : `${Math.min(99_999_999, Math.ceil(millis / 1000))}S`;
}
