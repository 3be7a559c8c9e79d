import { formatCount, formatTime, userLabel } from './display-format.js';
import type { SessionSummary } from './model.js';

/**
 * Column headings of the session list, shared by the TUI and the plain table. Tokens are "in/out" and
 * D/H/M "denied/held/masked": the table must fit 100 columns with real model names in it.
 */
export const SESSION_COLUMNS = ['TIME', 'USER', 'CONNECTION', 'REQ', 'MODEL', 'TOKENS', 'D/H/M'] as const;

/** The cells of one session row, in `SESSION_COLUMNS` order. */
export function sessionCells(s: SessionSummary): string[] {
  const [first, ...more] = s.models;
  const model = first === undefined ? '–' : more.length > 0 ? `${first} +${more.length}` : first;
  return [
    formatTime(s.startedAt).slice(0, 16),
    userLabel(s.user),
    s.connection,
    String(s.requests),
    model,
    `${formatCount(s.tokens.in)}/${formatCount(s.tokens.out)}`,
    `${s.denied}/${s.held}/${s.masked}`,
  ];
}

/** Width of each column: the widest cell or heading. */
export function columnWidths(rows: readonly (readonly string[])[]): number[] {
  return SESSION_COLUMNS.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
}

/** Cells padded to their column widths and joined by two spaces. */
export function tableLine(cells: readonly string[], widths: readonly number[]): string {
  return cells
    .map((c, i) => c.padEnd(widths[i] ?? c.length))
    .join('  ')
    .trimEnd();
}

/**
 * Sessions whose user (subject or email), connection or model contain every word of the query,
 * ignoring case; an empty query keeps all.
 */
export function filterSessions(sessions: readonly SessionSummary[], query: string): SessionSummary[] {
  const words = query.toLowerCase().split(/\s+/).filter((w) => w !== '');
  if (words.length === 0) return [...sessions];
  return sessions.filter((s) => {
    const haystack = [s.user.sub, s.user.email ?? '', s.connection, ...s.models].join('\n').toLowerCase();
    return words.every((w) => haystack.includes(w));
  });
}
