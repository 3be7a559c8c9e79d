import type { IncomingMessage } from 'node:http';
import { once } from 'node:events';
import { decodeContentEncoding } from '../codec/content-decoding.js';
import { parseJsonBody } from '../codec/json-text.js';
import type { PolicyBody } from './policy-input.js';

/** How much of a request body is read ahead for policy by default: 1 MiB. */
export const DEFAULT_POLICY_READ_AHEAD = 1024 * 1024;

/** Options of {@link readBodyForPolicy}. */
export interface ReadAheadOptions {
  /** Most bytes read ahead, and most bytes a compressed body may decode to; a longer body gets `json: null` and a problem. */
  readonly limit?: number;
}

/**
 * Why policy cannot judge a body: longer than the read-ahead (as sent or once decompressed), or labelled
 * or shaped as JSON (or compressed) yet not readable as one document. Never the same as "no body".
 */
export interface BodyProblem {
  readonly kind: 'too-large' | 'unreadable';
  readonly reason: string;
}

/** What the read-ahead saw: the body as policy sees it, and the problem when it could not be judged. */
export interface ReadAheadBody extends PolicyBody {
  readonly problem?: BodyProblem;
}

const NO_BODY: ReadAheadBody = Object.freeze({ json: null, size: 0 });

function declaredLength(req: IncomingMessage): number | undefined {
  const value = req.headers['content-length'];
  if (value === undefined || req.headers['transfer-encoding'] !== undefined) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

function tooLarge(size: number, reason: string): ReadAheadBody {
  return { json: null, size, problem: { kind: 'too-large', reason } };
}

/**
 * The body as the upstream's JSON parser would read it: content codings undone (bounded by `limit`), then
 * decoded in the charset and the encoding its bytes show. Parsed whatever the Content-Type says, since
 * upstreams often ignore it: a rule must not be evaded by a label.
 */
async function judgeable(req: IncomingMessage, bytes: Buffer, size: number, limit: number): Promise<ReadAheadBody> {
  const decoded = await decodeContentEncoding(bytes, req.headers['content-encoding'], { maxOutput: limit });
  if ('tooLarge' in decoded) return tooLarge(size, `decompressed, it is larger than the ${limit} bytes policy reads ahead`);
  if ('error' in decoded) return { json: null, size, problem: { kind: 'unreadable', reason: decoded.error } };
  const parsed = parseJsonBody(decoded.bytes, req.headers['content-type']);
  if (parsed.kind === 'unreadable') return { json: null, size, problem: { kind: 'unreadable', reason: parsed.reason } };
  return { json: parsed.kind === 'json' ? parsed.value : null, size };
}

/**
 * Reads up to `limit` bytes of the request body so policy can see `request.json`, then puts them back
 * (`unshift`) so the body still goes upstream whole, as sent, and as a stream. A body longer than the
 * limit is not parsed (`json: null`, problem `too-large`); `size` is then its Content-Length, or a lower
 * bound above the limit. Memory per request stays bounded by the limit (twice, while a compressed body is
 * decoded); the rest of the body waits in the caller's socket.
 */
export async function readBodyForPolicy(req: IncomingMessage, options: ReadAheadOptions = {}): Promise<ReadAheadBody> {
  const limit = options.limit ?? DEFAULT_POLICY_READ_AHEAD;
  const declared = declaredLength(req);
  if (declared === 0 || (declared === undefined && req.headers['transfer-encoding'] === undefined)) return NO_BODY;
  if (declared !== undefined && declared > limit) return tooLarge(declared, `it is larger than the ${limit} bytes policy reads ahead`);

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
        return tooLarge(declared ?? total, `it is larger than the ${limit} bytes policy reads ahead`);
      }
    }
    if (req.complete || req.readableEnded || req.destroyed) {
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
      put();
      if (total === 0) return NO_BODY;
      return judgeable(req, body, declared ?? total, limit);
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
