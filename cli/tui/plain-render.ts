import { formatMs } from './display-format.js';
import { exchangeLines } from './exchange-lines.js';
import type { ExchangeDetail, SessionSummary, TcpTimelineEntry } from './model.js';
import { columnWidths, SESSION_COLUMNS, sessionCells, tableLine } from './session-table.js';
import type { DiffPart } from './word-diff.js';

/** The session list as a plain table, for pipes and CI. */
export function renderSessionTable(sessions: readonly SessionSummary[]): string {
  const rows = sessions.map(sessionCells);
  const widths = columnWidths(rows);
  return [tableLine(SESSION_COLUMNS, widths), ...rows.map((r) => tableLine(r, widths))].join('\n');
}

/** One exchange as plain text: summary, request, response and, when streamed, the answer. */
export function renderExchange(exchange: ExchangeDetail): string {
  return exchangeLines(exchange)
    .map((l) => l.text)
    .join('\n');
}

/** A tcp session's timeline, one read or write per line. */
export function renderTcpTimeline(timeline: readonly TcpTimelineEntry[]): string {
  return timeline.map((e) => `${formatMs(e.t).padStart(7)}  ${e.direction === 'in' ? '→' : '←'} ${String(e.bytes).padStart(6)} B  ${e.preview}`).join('\n');
}

/** A word diff as plain text, marked the way `git diff --word-diff=plain` does: [-old-]{+new+}. */
export function renderDiff(diff: readonly DiffPart[]): string {
  return diff.map((p) => (p.op === 'equal' ? p.text : p.op === 'delete' ? `[-${p.text}-]` : `{+${p.text}+}`)).join('');
}
