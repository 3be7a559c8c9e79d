import type { IncomingMessage } from 'node:http';
import { hasRequestBody } from '../pipeline/bounded-body.js';

/**
 * The request body, if it has arrived whole. A small body with a Content-Length (the common chat request)
 * has usually arrived by the time the pipeline's stages have run: it is then recorded with the request and
 * sent as one Buffer, which undici writes together with the head in one syscall and without a stream.
 * Anything else streams, counted (undefined here).
 */
export function takeWholeBody(req: IncomingMessage): Buffer | undefined {
  if (!hasRequestBody(req)) return undefined;
  const declared = req.headers['content-length'];
  if (declared !== undefined && req.headers['transfer-encoding'] === undefined && req.readableLength === Number(declared)) {
    const whole = req.read(req.readableLength) as Buffer | null;
    if (whole !== null) {
      // Let the (now empty) request reach its end so the next request on the connection is read.
      req.resume();
      return whole;
    }
  }
  return undefined;
}

/**
 * The request body of an exchange answered without forwarding, when it has arrived whole (with the head,
 * or read ahead for policy and put back): taken, so its record keeps it like any other body. A body still
 * on its way, or held back by a caller waiting for 100 Continue, is never waited for; undefined then.
 * Bounded: the parser stops reading the caller's socket once the request's buffer is full, and the
 * read-ahead by `policy_read_ahead`.
 */
export function arrivedBody(req: IncomingMessage): Buffer | undefined {
  if (!hasRequestBody(req) || !req.complete || req.readableEnded) return undefined;
  const chunks: Buffer[] = [];
  let chunk: Buffer | null;
  while ((chunk = req.read() as Buffer | null) !== null) chunks.push(chunk);
  // Let the (now empty) request reach its end, so the connection can carry the next request.
  req.resume();
  return chunks.length === 0 ? undefined : Buffer.concat(chunks);
}

/**
 * The whole request body when it has arrived (read ahead for policy and put back), without taking it: it is
 * read and put back at once, so it still goes upstream as it came. Empty for a request without a body;
 * undefined while any of it is still on its way (longer than the read-ahead).
 */
export function peekArrivedBody(req: IncomingMessage): Buffer | undefined {
  if (!hasRequestBody(req)) return Buffer.alloc(0);
  if (!req.complete || req.readableEnded) return undefined;
  const n = req.readableLength;
  if (n === 0) return Buffer.alloc(0);
  const whole = req.read(n) as Buffer | null;
  if (whole === null) return undefined;
  // Synchronously after the read: 'end' comes only on a later tick, and only if the buffer is still empty.
  req.unshift(whole);
  return whole;
}
