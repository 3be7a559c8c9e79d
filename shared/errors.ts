/**
 * The one table of sluice error codes. Every code has a default message, the HTTP status the gateway
 * answers with, the exit code the CLI ends with, and, where a tunnel is closed because of it, the
 * WebSocket close code. README.md documents each code; test/unit/errors.test.ts checks both.
 */
export interface ErrorSpec {
  readonly message: string;
  readonly status: number;
  readonly exit: number;
  readonly close?: number;
}

/** CLI exit codes, shared by every command. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  auth: 3,
  forbidden: 4,
  notFound: 5,
  unavailable: 6,
  upstream: 7,
  internal: 10,
} as const;

export const ERRORS = {
  // configuration and usage
  ERR_USAGE: { message: 'Invalid command-line usage', status: 400, exit: EXIT.usage },
  ERR_CONFIG_INVALID: { message: 'The configuration file is invalid', status: 500, exit: EXIT.usage },
  ERR_CONFIG_ENV_MISSING: { message: 'The configuration names an environment variable that is not set', status: 500, exit: EXIT.usage },
  ERR_CONFIG_UNREADABLE: { message: 'The configuration file cannot be read', status: 500, exit: EXIT.usage },
  ERR_INSECURE_LISTEN: { message: 'Refusing to listen on a non-loopback address without TLS (pass --insecure to override)', status: 500, exit: EXIT.usage },
  ERR_LISTEN_FAILED: { message: 'The gateway cannot listen on its address', status: 500, exit: EXIT.usage },
  ERR_BAD_REQUEST: { message: 'The request is malformed', status: 400, exit: EXIT.usage },

  // identity: bearer tokens presented to the gateway
  ERR_AUTH_REQUIRED: { message: 'A bearer token is required', status: 401, exit: EXIT.auth, close: 4401 },
  ERR_TOKEN_MALFORMED: { message: 'The bearer token is not a well-formed JWT', status: 401, exit: EXIT.auth, close: 4401 },
  ERR_TOKEN_ALGORITHM: { message: 'The token is signed with an algorithm the gateway does not accept', status: 401, exit: EXIT.auth, close: 4401 },
  ERR_TOKEN_KEY_UNKNOWN: { message: 'The token is signed by a key the issuer does not publish', status: 401, exit: EXIT.auth, close: 4401 },
  ERR_TOKEN_SIGNATURE: { message: 'The token signature is invalid', status: 401, exit: EXIT.auth, close: 4401 },
  ERR_TOKEN_EXPIRED: { message: 'The token has expired', status: 401, exit: EXIT.auth, close: 4401 },
  ERR_TOKEN_ISSUER: { message: 'The token was issued by an issuer the gateway does not trust', status: 401, exit: EXIT.auth, close: 4401 },
  ERR_TOKEN_AUDIENCE: { message: 'The token is not meant for this gateway (audience mismatch)', status: 401, exit: EXIT.auth, close: 4401 },
  ERR_TOKEN_CLAIMS: { message: 'The token claims are invalid', status: 401, exit: EXIT.auth, close: 4401 },
  ERR_IDP_UNAVAILABLE: { message: 'The identity provider cannot be reached', status: 503, exit: EXIT.unavailable, close: 1011 },
  ERR_IDP_MISMATCH: { message: "The identity provider's discovery document or keys do not fit the gateway's identity settings", status: 503, exit: EXIT.usage, close: 1011 },

  // authorization
  ERR_FORBIDDEN: { message: 'You are not allowed to do this', status: 403, exit: EXIT.forbidden, close: 4403 },
  ERR_CONNECTION_FORBIDDEN: { message: 'You are not allowed to use this connection', status: 403, exit: EXIT.forbidden, close: 4403 },
  ERR_CONNECTION_UNKNOWN: { message: 'No connection has this name', status: 404, exit: EXIT.notFound, close: 4404 },
  ERR_NOT_FOUND: { message: 'Not found', status: 404, exit: EXIT.notFound },

  // CLI login and local state
  ERR_NOT_LOGGED_IN: { message: 'Not logged in: run `sluice login`', status: 401, exit: EXIT.auth },
  ERR_LOGIN_DENIED: { message: 'The login was denied at the identity provider', status: 401, exit: EXIT.auth },
  ERR_LOGIN_EXPIRED: { message: 'The device code expired before the login was approved: run `sluice login` again', status: 401, exit: EXIT.auth },
  ERR_LOGIN_FAILED: { message: 'The identity provider refused the login', status: 401, exit: EXIT.auth },
  ERR_REFRESH_FAILED: { message: 'The login could not be renewed: run `sluice login` again', status: 401, exit: EXIT.auth },
  ERR_TOKEN_STORE: { message: 'The token store cannot be used', status: 500, exit: EXIT.failure },
  ERR_GATEWAY_UNREACHABLE: { message: 'The gateway cannot be reached', status: 502, exit: EXIT.unavailable },
  ERR_GATEWAY_RESPONSE: { message: 'The gateway answered in an unexpected way', status: 502, exit: EXIT.unavailable },
  ERR_LOCAL_AUTH: { message: 'The request to the local port lacks the local token of `sluice connect`', status: 401, exit: EXIT.auth },

  // the data path
  ERR_TUNNEL_PROTOCOL: { message: 'The tunnel received a malformed frame', status: 400, exit: EXIT.failure, close: 4400 },
  ERR_TUNNEL_LIMIT: { message: 'The tunnel exceeded a limit', status: 429, exit: EXIT.failure, close: 4429 },
  ERR_BODY_TOO_LARGE: { message: 'The request body exceeds the limit', status: 413, exit: EXIT.failure },
  ERR_BODY_UNREADABLE: { message: 'The request body cannot be read as JSON, so policy cannot judge it', status: 400, exit: EXIT.failure },
  ERR_PATH_REFUSED: { message: 'The request path is not allowed', status: 400, exit: EXIT.failure },
  ERR_GRPC_METHOD_UNKNOWN: { message: "The gRPC method is not in the connection's descriptors, so its messages cannot be masked or judged", status: 501, exit: EXIT.failure },
  ERR_UPSTREAM_UNAVAILABLE: { message: 'The upstream of this connection cannot be reached', status: 502, exit: EXIT.upstream },
  ERR_UPSTREAM_TIMEOUT: { message: 'The upstream of this connection did not answer in time', status: 504, exit: EXIT.upstream },
  ERR_SHUTTING_DOWN: { message: 'The gateway is shutting down', status: 503, exit: EXIT.unavailable, close: 1001 },

  ERR_RECORDING_UNAVAILABLE: { message: 'The recording cannot be written, so the exchange was refused', status: 503, exit: EXIT.unavailable, close: 1011 },
  ERR_MASTER_KEY_MISMATCH: { message: 'The master key does not match the one this data directory was written with', status: 503, exit: EXIT.usage },
  ERR_STORE_UNAVAILABLE: { message: 'The shared store (PostgreSQL) cannot be reached', status: 503, exit: EXIT.unavailable, close: 1011 },
  ERR_POLICY_DENIED: { message: 'A policy denies this request', status: 403, exit: EXIT.forbidden },
  ERR_POLICY_ERROR: { message: 'The request could not be checked against a policy rule', status: 403, exit: EXIT.forbidden },
  ERR_REVIEW_REJECTED: { message: 'A reviewer rejected this request', status: 403, exit: EXIT.forbidden },
  ERR_REVIEW_EXPIRED: { message: 'review expired', status: 403, exit: EXIT.forbidden },
  ERR_REVIEW_ABANDONED: { message: 'The caller left before the review was decided', status: 409, exit: EXIT.failure },
  ERR_REVIEW_LIMIT: { message: 'Too many requests are waiting for review', status: 429, exit: EXIT.failure },
  ERR_QUOTA_EXCEEDED: { message: 'A quota is used up', status: 429, exit: EXIT.failure },
  ERR_REVIEW_CONFLICT: { message: 'The review is already decided, or you already approved it', status: 409, exit: EXIT.failure },
  ERR_SELF_APPROVAL: { message: 'You cannot review your own request', status: 403, exit: EXIT.forbidden },
  ERR_NOT_REVIEWER: { message: 'You are not in the reviewer groups of this review', status: 403, exit: EXIT.forbidden },
  ERR_GRANT_REQUIRED: { message: 'This connection needs an approved access grant', status: 403, exit: EXIT.forbidden, close: 4403 },
  ERR_GRANT_EXPIRED: { message: 'The access grant of this tunnel ended', status: 403, exit: EXIT.forbidden, close: 4403 },
  ERR_GRANT_REVOKED: { message: 'The access grant of this tunnel was revoked', status: 403, exit: EXIT.forbidden, close: 4403 },
  ERR_REQUEST_UNMASKABLE: { message: 'The request body cannot be masked, so it is not forwarded (compressed, binary or not UTF-8)', status: 415, exit: EXIT.failure },
  ERR_MASKING_BLOCKED: { message: 'The response cannot be masked, so it is not sent (binary or undecodable body, unknown stream shape, or over a masking limit)', status: 502, exit: EXIT.upstream },
  ERR_RECORDING_TAMPERED: { message: 'A session recording does not verify: altered, reordered, cut or unreadable', status: 409, exit: EXIT.failure },
  ERR_INTERNAL: { message: 'Internal error', status: 500, exit: EXIT.internal, close: 1011 },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export interface SluiceErrorOptions {
  message?: string;
  details?: Record<string, unknown>;
  cause?: unknown;
}

/** An error with a stable code from the table; `message` defaults to the table's. */
export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, options: SluiceErrorOptions = {}) {
    super(options.message ?? ERRORS[code].message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SluiceError';
    this.code = code;
    this.details = options.details;
  }

  get status(): number {
    return ERRORS[this.code].status;
  }

  get exitCode(): number {
    return ERRORS[this.code].exit;
  }

  get closeCode(): number {
    return (ERRORS[this.code] as ErrorSpec).close ?? 1011;
  }

  /** The one JSON error shape of the REST API. */
  toJSON(): { error: { code: ErrorCode; message: string } & Record<string, unknown> } {
    return { error: { code: this.code, message: this.message, ...this.details } };
  }
}

export function isSluiceError(err: unknown): err is SluiceError {
  return err instanceof SluiceError;
}

/** Any thrown value as a SluiceError; unknown errors become ERR_INTERNAL with the original as cause. */
export function toSluiceError(err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  return new SluiceError('ERR_INTERNAL', { cause: err });
}
