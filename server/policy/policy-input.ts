import type { IncomingHttpHeaders } from 'node:http';
import { principalJson, type Principal } from '../identity/principal.js';
import { policyMetadata, splitCallPath } from '../protocols/grpc/grpc-metadata.js';
import type { PolicyActivation } from './cel-expression.js';

/** What policy knows of the request body: the parsed JSON (or null) and its size in bytes. */
export interface PolicyBody {
  /**
   * The parsed body when it is JSON and fit in the read-ahead; null otherwise. On a connection that masks
   * requests, the body as it will leave: masked by the connection's `masking.request` profiles.
   */
  readonly json: unknown;
  /**
   * The body as the caller sent it, parsed, when it differs from `json` (request masking); absent: `json`
   * is the body as sent. Rules see it only as `request.raw_json`, named on purpose.
   */
  readonly raw_json?: unknown;
  /** Body bytes: Content-Length, or counted; a lower bound when a chunked body outgrew the read-ahead. */
  readonly size: number;
}

/** The caller's counts in the quota windows, as `usage` shows them to rules (server/quotas/usage-counters.ts). */
export interface PolicyUsage {
  readonly requests_per_minute: number;
  readonly tokens_today: number;
  readonly tokens_this_month: number;
  readonly input_tokens_today: number;
  readonly output_tokens_today: number;
}

/** Usage where none was read (no rule names it, or no store counts it). */
export const NO_USAGE: PolicyUsage = Object.freeze({ requests_per_minute: 0, tokens_today: 0, tokens_this_month: 0, input_tokens_today: 0, output_tokens_today: 0 });

/** The exchange as policy sees it; a structural subset of the pipeline's `Exchange`. */
export interface PolicySubject {
  readonly principal: Principal;
  readonly connection: { readonly name: string; readonly type: string; readonly labels: Readonly<Record<string, string>> };
  readonly session: { readonly id: string; readonly reason?: string };
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
}

/** Credentials are the gateway's business, never a rule's: a failing rule's message must not echo them. */
const HIDDEN_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie']);

function headerMap(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HIDDEN_HEADERS.has(name)) continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

function splitPath(path: string): { path: string; query: Record<string, string> } {
  const q = path.indexOf('?');
  if (q === -1) return { path, query: {} };
  const query: Record<string, string> = {};
  // The first value of a repeated parameter, like most web frameworks.
  for (const [k, v] of new URLSearchParams(path.slice(q + 1))) if (!Object.hasOwn(query, k)) query[k] = v;
  return { path: path.slice(0, q), query };
}

/**
 * What a rule sees of a gRPC call (`request.grpc`): its service, method and metadata (lower-case keys,
 * binary `-bin` entries left out); null for any other kind of request, so a rule about gRPC fails closed
 * on the rest.
 */
function grpcCall(subject: PolicySubject): { service: string; method: string; metadata: Record<string, string> } | null {
  if (subject.connection.type !== 'grpc') return null;
  const call = splitCallPath(subject.path);
  return call === undefined ? null : { service: call.service, method: call.method, metadata: policyMetadata(subject.headers) };
}

/**
 * Deepest nesting of request JSON that rules are shown. CEL compares and converts values recursively, at a
 * cost that grows faster than the depth: a body of `{"a":` 4000 times took seconds of one CPU in `request.json
 * == {…}`, with the event loop blocked. Real API payloads nest a few dozen levels at most.
 */
export const MAX_POLICY_JSON_DEPTH = 100;

/** `json`, or a throw (a failed rule: ERR_POLICY_ERROR for deny and review) when it nests past the bound. */
function boundedJson(json: unknown): unknown {
  // Iterative: the body may nest far deeper than the call stack.
  const stack: Array<[unknown, number]> = [[json, 1]];
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (value === null || typeof value !== 'object') continue;
    if (depth > MAX_POLICY_JSON_DEPTH) throw new Error(`the request JSON nests deeper than ${MAX_POLICY_JSON_DEPTH} levels`);
    for (const child of Object.values(value)) if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
  }
  return json;
}

/**
 * Builds the CEL activation of one request: identity, connection, request, session, usage, now. `body` may be a
 * function, called each time a rule reads `request.json` or `request.size` (it may throw: the body is
 * not read yet). `request.size` is a CEL int (a bigint), as the rules are type-checked to use it.
 */
export function policyInput(subject: PolicySubject, body: PolicyBody | (() => PolicyBody), now: Date, usage: PolicyUsage = NO_USAGE): PolicyActivation {
  const p = subject.principal;
  const { path, query } = splitPath(subject.path);
  const headers = headerMap(subject.headers);
  const grpc = grpcCall(subject);
  // Checked once per body, on first read: rules that never read the body never pay for the walk.
  let checked: { json: unknown } | undefined;
  const judged = (b: PolicyBody): unknown => {
    if (checked === undefined || checked.json !== b.json) checked = { json: boundedJson(b.json) };
    return checked.json;
  };
  let checkedRaw: { json: unknown } | undefined;
  const judgedRaw = (b: PolicyBody): unknown => {
    const raw = b.raw_json === undefined ? b.json : b.raw_json;
    if (checkedRaw === undefined || checkedRaw.json !== raw) checkedRaw = { json: boundedJson(raw) };
    return checkedRaw.json;
  };
  const read = typeof body === 'function' ? body : (): PolicyBody => body;
  const request = {
    method: subject.method,
    path,
    query,
    headers,
    grpc,
    get json(): unknown {
      return judged(read());
    },
    get raw_json(): unknown {
      return judgedRaw(read());
    },
    get size(): bigint {
      return BigInt(read().size);
    },
  };
  return {
    identity: principalJson(p),
    connection: { name: subject.connection.name, type: subject.connection.type, labels: subject.connection.labels },
    request,
    session: { id: subject.session.id, reason: subject.session.reason ?? null },
    // CEL ints, as the rules are type-checked to compare them.
    usage: Object.fromEntries(Object.entries(usage).map(([k, v]) => [k, BigInt(v)])),
    now,
  };
}
