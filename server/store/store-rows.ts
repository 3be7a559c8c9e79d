import { newGrantId, type Grant, type Review, type ReviewApproval } from '../approval/review.js';
import type { SessionInfo, SessionStatus, SessionVia, UsageFilter, UsageRow } from './store.js';

/** Sessions a page holds when the caller names no limit. */
export const DEFAULT_SESSION_PAGE = 50;
/** Sessions a page holds at most, whatever the caller asks. */
export const MAX_SESSION_PAGE = 500;

/**
 * The columns of a session row that every backend names and types alike. The user column and the models
 * are not among them: each backend names or aggregates them its own way and hands them over decoded.
 */
export interface SessionColumns {
  id: string;
  email: string | null;
  groups: string;
  client_id: string | null;
  connection: string;
  via: string;
  reason: string | null;
  client_address: string;
  cli_version: string | null;
  resend_of: string | null;
  started_at: number;
  ended_at: number | null;
  file: string;
  key_id: string;
  replica: string;
  status: string;
  records: number | null;
  final_hash: string | null;
  requests: number;
  errors: number;
  bytes_up: number;
  bytes_down: number;
  denied: number;
  held: number;
  masked: number;
  tokens_prompt: number;
  tokens_completion: number;
  tokens_total: number;
  last_status: number;
}

function optional<T>(value: T | null): T | undefined {
  return value === null ? undefined : value;
}

/** A session as the Store contract gives it, from its row, its user and its models in order of first use. */
export function sessionFromRow(row: SessionColumns, user: string, models: string[]): SessionInfo {
  return {
    id: row.id,
    user,
    email: optional(row.email),
    groups: JSON.parse(row.groups) as string[],
    clientId: optional(row.client_id),
    connection: row.connection,
    via: row.via as SessionVia,
    reason: optional(row.reason),
    clientAddress: row.client_address,
    cliVersion: optional(row.cli_version),
    resendOf: optional(row.resend_of),
    startedAt: row.started_at,
    endedAt: optional(row.ended_at),
    file: row.file,
    keyId: row.key_id,
    replica: row.replica,
    status: row.status as SessionStatus,
    records: optional(row.records),
    finalHash: optional(row.final_hash),
    models,
    tokens: { prompt: row.tokens_prompt, completion: row.tokens_completion, total: row.tokens_total },
    counters: {
      requests: row.requests,
      errors: row.errors,
      bytesUp: row.bytes_up,
      bytesDown: row.bytes_down,
      denied: row.denied,
      held: row.held,
      masked: row.masked,
    },
    lastStatus: row.last_status,
  };
}

/** The page size a listing uses: the caller's, truncated and held between 1 and MAX_SESSION_PAGE. */
export function sessionPageLimit(limit: number | undefined): number {
  return Math.min(Math.max(1, Math.trunc(limit ?? DEFAULT_SESSION_PAGE)), MAX_SESSION_PAGE);
}

/**
 * A page from rows read one past the limit: the extra row only says that more follow, and the cursor
 * names the last session shown, so the next page starts right after it in (startedAt, id) order.
 */
export function sessionPage(rows: SessionInfo[], limit: number): { sessions: SessionInfo[]; next?: string } {
  const sessions = rows.slice(0, limit);
  return rows.length > limit ? { sessions, next: encodeSessionCursor(sessions[sessions.length - 1]!) } : { sessions };
}

function encodeSessionCursor(session: SessionInfo): string {
  return Buffer.from(JSON.stringify([session.startedAt, session.id])).toString('base64url');
}

/**
 * The (startedAt, id) a paging cursor names. Strict: started_at is an integer column in every backend,
 * so a cursor with anything else in it was not made here and is refused rather than compared.
 */
export function decodeSessionCursor(cursor: string): [number, string] {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(value) && Number.isSafeInteger(value[0]) && typeof value[1] === 'string') return [value[0] as number, value[1]];
  } catch {
    // Falls through to the error below.
  }
  throw new RangeError('The paging cursor is malformed');
}

/**
 * The grant an approved grant review yields: for its requester and connection, from the final approval
 * for the duration the review asked, naming everyone who approved.
 */
export function grantOnApproval(review: Review, approvals: readonly ReviewApproval[], durationMs: number, at: number): Grant {
  return {
    id: newGrantId(),
    reviewId: review.id,
    sub: review.requester.sub,
    email: review.requester.email,
    connection: review.connection,
    reason: review.reason,
    approvedBy: approvals.map((a) => a.sub),
    createdAt: at,
    expiresAt: at + durationMs,
  };
}

/** A row of the usage query, as either backend returns it (Postgres sums are strings). */
export interface UsageSqlRow {
  readonly key: string;
  readonly sessions: number | string;
  readonly requests: number | string | null;
  readonly input_tokens: number | string | null;
  readonly output_tokens: number | string | null;
}

/**
 * The usage query of both backends, grouped as `by` asks; `where` filters the sessions (alias `s`), and
 * `userColumn` is the sessions' user column (named differently in the two schemas).
 */
export function usageQuery(by: UsageFilter['by'], where: string, userColumn: string): string {
  if (by === 'model') {
    return `SELECT m.model AS key, count(*) AS sessions, sum(m.requests) AS requests, sum(m.tokens_prompt) AS input_tokens, sum(m.tokens_completion) AS output_tokens
      FROM session_models m JOIN sessions s ON s.id = m.session_id ${where} GROUP BY m.model ORDER BY m.model`;
  }
  const column = by === 'user' ? `s.${userColumn}` : 's.connection';
  return `SELECT ${column} AS key, count(*) AS sessions, sum(s.requests) AS requests, sum(s.tokens_prompt) AS input_tokens, sum(s.tokens_completion) AS output_tokens
    FROM sessions s ${where} GROUP BY ${column} ORDER BY ${column}`;
}

/** One usage row in the store's shape. */
export function usageRow(r: UsageSqlRow): UsageRow {
  return { key: r.key, sessions: Number(r.sessions), requests: Number(r.requests ?? 0), inputTokens: Number(r.input_tokens ?? 0), outputTokens: Number(r.output_tokens ?? 0) };
}
