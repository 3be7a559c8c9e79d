/** Every gRPC status code by number (grpc/doc/statuscodes.md); the gateway's exports and the TUI name statuses alike. */
const STATUS_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

/** The name of a gRPC status code, or null when it has none. */
export function grpcStatusName(status: number | null | undefined): string | null {
  return status === null || status === undefined ? null : (STATUS_NAMES[status] ?? null);
}

/** `grpc-message` is percent-encoded on the wire; a malformed one is shown as sent rather than dropped. */
export function decodeGrpcMessage(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** `{service, method}` of a gRPC path `/package.Service/Method`; undefined for any other path. */
export function grpcMethodOf(path: string): { service: string; method: string } | undefined {
  const m = /^\/([^/]+)\/([^/]+)$/.exec(path);
  return m === null ? undefined : { service: m[1]!, method: m[2]! };
}
