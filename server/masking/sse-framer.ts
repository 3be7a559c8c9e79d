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

const LINE_END = /\r\n|\r|\n/g;

/**
 * Splits an SSE text stream into events at blank lines (WHATWG HTML "server-sent events"), keeping the
 * exact bytes of each. eventsource-parser parses the same grammar but hands back fields, not the
 * original text, and framing must survive untouched.
 */
export class SseFramer {
  readonly #maxEvent: number;
  #buf = '';

  constructor(options: { maxEvent: number }) {
    this.#maxEvent = options.maxEvent;
  }

  /** The events completed by `text`. */
  push(text: string): SseEvent[] {
    this.#buf += text;
    const events: SseEvent[] = [];
    let eventStart = 0;
    let lineStart = 0;
    const lines: string[] = [];
    let eol = '';
    LINE_END.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = LINE_END.exec(this.#buf)) !== null) {
      // A "\r" at the very end may be the first half of "\r\n": wait for the next chunk.
      if (m[0] === '\r' && m.index === this.#buf.length - 1) break;
      const line = this.#buf.slice(lineStart, m.index);
      lineStart = m.index + m[0].length;
      if (line === '') {
        events.push(parseEvent(this.#buf.slice(eventStart, lineStart), lines.splice(0), eol || m[0]));
        eventStart = lineStart;
        eol = '';
      } else {
        lines.push(line);
        if (eol === '') eol = m[0];
      }
    }
    this.#buf = this.#buf.slice(eventStart);
    if (this.#buf.length > this.#maxEvent) {
      throw new SluiceError('ERR_MASKING_BLOCKED', {
        message: `A server-sent event exceeds the masking limit of ${this.#maxEvent} bytes (max_json_body)`,
      });
    }
    return events;
  }

  /** What remains at the end of the stream: an unterminated last event, or null. */
  end(): SseEvent | null {
    const rest = this.#buf;
    this.#buf = '';
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
  const out: string[] = [];
  let placed = false;
  for (const line of ev.lines) {
    if (!line.startsWith(':') && (line === 'data' || line.startsWith('data:'))) {
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
