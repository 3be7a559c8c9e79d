import { SluiceError } from '../../shared/errors.js';

/** One server-sent event exactly as received, with its fields parsed. */
export interface SseEvent {
  /** The exact text, terminating blank line included: an event left alone is re-sent byte for byte. */
  readonly raw: string;
  /** The event's lines without terminators. */
  readonly lines: readonly string[];
  /** The event's first line terminator ("\n", "\r\n" or "\r"), reused for rewritten lines. */
  readonly eol: string;
  /** The `event:` field, if any. */
  readonly event?: string;
  /** The `data:` fields joined with "\n"; undefined when the event has none. */
  readonly data?: string;
}

/**
 * Splits an SSE text stream into events at blank lines (WHATWG HTML "server-sent events"), keeping the
 * exact bytes of each. eventsource-parser parses the same grammar but hands back fields, not the
 * original text, and framing must survive untouched.
 */
export class SseFramer {
  readonly #maxEvent: number;
  /** From the start of the unfinished event. */
  #buf = '';
  /** Where the unfinished line starts in #buf; everything before it is in #lines. */
  #lineStart = 0;
  #lines: string[] = [];
  #eol = '';
  /** Whether a "\r" has been seen: until then lines end at "\n" only, found by the faster search. */
  #sawCr = false;

  constructor(options: { maxEvent: number }) {
    this.#maxEvent = options.maxEvent;
  }

  /** The events completed by `text`. */
  push(text: string): SseEvent[] {
    if (!this.#sawCr && text.includes('\r')) this.#sawCr = true;
    const buf = this.#buf + text;
    const events: SseEvent[] = [];
    let eventStart = 0;
    let lineStart = this.#lineStart;
    for (;;) {
      const { at, length } = this.#lineEnd(buf, lineStart);
      if (at === -1) break;
      const line = buf.slice(lineStart, at);
      const eol = buf.slice(at, at + length);
      lineStart = at + length;
      if (line === '') {
        events.push(parseEvent(buf.slice(eventStart, lineStart), this.#lines, this.#eol || eol));
        this.#lines = [];
        this.#eol = '';
        eventStart = lineStart;
      } else {
        this.#lines.push(line);
        if (this.#eol === '') this.#eol = eol;
      }
    }
    this.#buf = eventStart === 0 ? buf : buf.slice(eventStart);
    this.#lineStart = lineStart - eventStart;
    if (this.#buf.length > this.#maxEvent) {
      throw new SluiceError('ERR_MASKING_BLOCKED', {
        message: `A server-sent event exceeds the masking limit of ${this.#maxEvent} bytes (max_json_body)`,
      });
    }
    return events;
  }

  /** The next line terminator at or after `from`: its index and length; index -1 when there is none yet. */
  #lineEnd(buf: string, from: number): { at: number; length: number } {
    const lf = buf.indexOf('\n', from);
    if (!this.#sawCr) return { at: lf, length: 1 };
    const cr = buf.indexOf('\r', from);
    if (cr === -1 || (lf !== -1 && lf < cr)) return { at: lf, length: 1 };
    if (cr + 1 < buf.length) return { at: cr, length: buf[cr + 1] === '\n' ? 2 : 1 };
    // A "\r" at the very end may be the first half of "\r\n": wait for the next chunk.
    return { at: -1, length: 0 };
  }

  /** What remains at the end of the stream: an unterminated last event, or null. */
  end(): SseEvent | null {
    const rest = this.#buf;
    this.#buf = '';
    this.#lineStart = 0;
    this.#lines = [];
    this.#eol = '';
    if (rest === '') return null;
    const lines = rest.split(/\r\n|\r|\n/);
    if (lines[lines.length - 1] === '') lines.pop();
    const eol = /\r\n|\r|\n/.exec(rest)?.[0] ?? '\n';
    return parseEvent(rest, lines, eol);
  }
}

function parseEvent(raw: string, lines: string[], eol: string): SseEvent {
  let event: string | undefined;
  let data: string | undefined;
  for (const line of lines) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data = data === undefined ? value : `${data}\n${value}`;
    else if (field === 'event') event = value;
  }
  return { raw, lines, eol, event, data };
}

/** The event with its data fields replaced by `data` (other fields and comments kept in place). */
export function withData(ev: SseEvent, data: string): string {
  // The common event: one data line and nothing else.
  if (ev.lines.length === 1 && isDataLine(ev.lines[0]!) && !data.includes('\n')) {
    return `data: ${data}${ev.eol}${ev.eol}`;
  }
  const out: string[] = [];
  let placed = false;
  for (const line of ev.lines) {
    if (isDataLine(line)) {
      if (!placed) for (const d of data.split('\n')) out.push(`data: ${d}`);
      placed = true;
    } else {
      out.push(line);
    }
  }
  return out.join(ev.eol) + ev.eol + ev.eol;
}

/** A new event (a flushed hold-back) in the stream's line-ending style. */
export function newEvent(eventName: string | undefined, data: string, eol: string): string {
  return `${eventName === undefined ? '' : `event: ${eventName}${eol}`}data: ${data}${eol}${eol}`;
}

function isDataLine(line: string): boolean {
  return line === 'data' || line.startsWith('data:');
}
