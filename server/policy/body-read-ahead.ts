import type { IncomingMessage } from 'node:http';
import { once } from 'node:events';
import type { PolicyBody } from './policy-input.js';

/** How much of a request body is read ahead for policy by default: 1 MiB. */
export const DEFAULT_POLICY_READ_AHEAD = 1024 * 1024;

/** Options of {@link readBodyForPolicy}. */
export interface ReadAheadOptions {
  /** Most bytes read ahead; a longer body gets `json: null`. */
  readonly limit?: number;
}

const NO_BODY: PolicyBody = Object.freeze({ json: null, size: 0 });

function declaredLength(req: IncomingMessage): number | undefined {
  const value = req.headers['content-length'];
  if (value === undefined || req.headers['transfer-encoding'] !== undefined) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

function parseJson(bytes: Buffer): unknown {
  // Parsed whatever the Content-Type says: upstreams often ignore it, so a rule must not be evaded by a label.
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    return null;
  }
}

/**
 * Reads up to `limit` bytes of the request body so policy can see `request.json`, then puts them back
 * (`unshift`) so the body still goes upstream whole, and as a stream. A body longer than the limit is
 * not parsed (`json: null`); `size` is then its Content-Length, or a lower bound above the limit. Memory
 * per request stays bounded by the limit; the rest of the body waits in the caller's socket.
 */
export async function readBodyForPolicy(req: IncomingMessage, options: ReadAheadOptions = {}): Promise<PolicyBody> {
  const limit = options.limit ?? DEFAULT_POLICY_READ_AHEAD;
  const declared = declaredLength(req);
  if (declared === 0 || (declared === undefined && req.headers['transfer-encoding'] === undefined)) return NO_BODY;
  if (declared !== undefined && declared > limit) return { json: null, size: declared };

  const chunks: Buffer[] = [];
  let total = 0;
  const put = (): void => {
    // Synchronously after the last read(): 'end' is only emitted on a later tick, and only if the buffer is still empty.
    if (chunks.length > 0) req.unshift(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total));
  };
  for (;;) {
    let chunk: Buffer | null;
    while ((chunk = req.read() as Buffer | null) !== null) {
      chunks.push(chunk);
      total += chunk.length;
      if (total > limit) {
        put();
        return { json: null, size: declared ?? total };
      }
    }
    if (req.complete || req.readableEnded || req.destroyed) {
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
      put();
      return { json: parseJson(body), size: declared ?? total };
    }
    const ac = new AbortController();
    try {
      await Promise.race([once(req, 'readable', { signal: ac.signal }), once(req, 'close', { signal: ac.signal })]);
    } catch {
      // 'error' rejects `once`: the caller went away; what was read is all there is.
    } finally {
      ac.abort();
    }
  }
}
