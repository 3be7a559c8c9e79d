import type { BodyView, SessionUser } from './model.js';

/** `YYYY-MM-DD HH:MM:SS` in UTC: auditors compare times across zones, and tests stay stable. */
export function formatTime(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(0, 19).replace('T', ' ');
}

/** A duration for humans: "850ms", "1.2s", "2m03s"; "–" when unknown. */
export function formatMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const m = Math.floor(ms / 60_000);
  const s = Math.floor((ms % 60_000) / 1000);
  return `${m}m${String(s).padStart(2, '0')}s`;
}

/** A token count: 950, 1.2k, 3.4M. */
export function formatCount(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1_000_000) return `${(n / 1000).toFixed(n < 10_000 ? 1 : 0)}k`;
  return `${(n / 1_000_000).toFixed(1)}M`;
}

/** The playback speed as shown: "0.25×", "2×". */
export function formatSpeed(speed: number): string {
  return `${speed}×`;
}

/** The user as listed: email when known, else the subject. */
export function userLabel(user: SessionUser): string {
  return user.email ?? user.sub;
}

/** Cuts text to `width` characters, marking the cut with "…". */
export function truncate(text: string, width: number): string {
  if (width <= 0) return '';
  return text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}…`;
}

/** A body as displayed: JSON pretty-printed with two spaces, text as is. */
export function bodyText(body: BodyView): string {
  switch (body.kind) {
    case 'json':
      return JSON.stringify(body.value, null, 2);
    case 'text':
      return body.text;
    case 'none':
      return '';
  }
}

/**
 * Word-wraps one line to `width` columns, breaking at spaces and cutting only words longer than a
 * row; continuation rows keep the line's indentation so wrapped JSON still reads as nested.
 */
export function wrapLine(text: string, width: number): string[] {
  if (width <= 0 || text.length <= width) return [text];
  const indent = /^ */.exec(text)?.[0] ?? '';
  const pad = indent.length < width / 2 ? indent : '';
  const rows: string[] = [];
  let row = '';
  for (const token of text.slice(indent.length).match(/\S+\s*/g) ?? []) {
    const prefix = rows.length === 0 ? indent : pad;
    if ((prefix + row + token).trimEnd().length <= width) {
      row += token;
      continue;
    }
    if (row !== '') rows.push(prefix + row.trimEnd());
    row = token;
    // A word longer than a row is cut.
    const room = width - pad.length;
    while (pad.length + row.trimEnd().length > width) {
      rows.push(pad + row.slice(0, room));
      row = row.slice(room);
    }
  }
  if (row !== '' || rows.length === 0) rows.push((rows.length === 0 ? indent : pad) + row.trimEnd());
  return rows;
}
