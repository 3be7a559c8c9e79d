import type { ServerResponse } from 'node:http';
import { SluiceError, toSluiceError, type ErrorCode } from '../../shared/errors.js';
import { openAiErrorType } from '../../shared/openai-error-type.js';
import { hasRequestBody } from './bounded-body.js';

/** The OpenAI-compatible error body of the data path: `{"error": {"type", "code", "message", ...}}`. */
export function openAiErrorBody(err: SluiceError, requestId?: string): string {
  return JSON.stringify({
    error: {
      ...err.details,
      type: openAiErrorType(err.status),
      code: err.code,
      message: err.message,
      ...(requestId === undefined ? {} : { request_id: requestId }),
    },
  });
}

/**
 * Answers with an OpenAI-style error if the response head was not sent yet; otherwise aborts the response,
 * so the caller never mistakes a truncated body for a complete one. Closes the connection when the request
 * body was not read to the end, rather than reading an unbounded remainder.
 */
export function sendErrorResponse(res: ServerResponse, error: unknown, requestId?: string): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const err = toSluiceError(error);
  const body = openAiErrorBody(err, requestId);
  const headers: string[] = ['content-type', 'application/json', 'content-length', String(Buffer.byteLength(body))];
  if (requestId !== undefined) headers.push('x-request-id', requestId);
  // A refusal that ends when a window turns (a quota) says when, as SDKs and proxies retry by it.
  const retryAfter = err.details?.retry_after;
  if (typeof retryAfter === 'number') headers.push('retry-after', String(retryAfter));
  const req = res.req as typeof res.req | undefined;
  if (req !== undefined && !req.complete && hasRequestBody(req)) {
    headers.push('connection', 'close');
    // Discard what is still arriving so the caller can finish sending and read this answer.
    req.resume();
  }
  res.writeHead(err.status, headers);
  res.end(body);
}

/** Maps an error from undici or the upstream socket to the data-path error naming the connection. */
export function upstreamError(err: unknown, connectionName: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const reason = err instanceof Error ? err.message : String(err);
  const timeout: ErrorCode | undefined =
    code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'ETIMEDOUT'
      ? 'ERR_UPSTREAM_TIMEOUT'
      : undefined;
  if (timeout !== undefined) {
    return new SluiceError(timeout, {
      message: `The upstream of connection "${connectionName}" did not answer in time (${reason})`,
      details: { connection: connectionName },
      cause: err,
    });
  }
  return new SluiceError('ERR_UPSTREAM_UNAVAILABLE', {
    message: `The upstream of connection "${connectionName}" cannot be reached (${reason})`,
    details: { connection: connectionName },
    cause: err,
  });
}
