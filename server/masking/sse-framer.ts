import { SluiceError } from '../../shared/errors.js';
import { LineScanner } from './line-scanner.js';

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
  /** The event is one `data:` line and nothing else (the common event), so it is rewritten whole. */
  readonly dataOnly: boolean;
}

/** Bounds of an SseFramer. */
export interface SseFramerOptions {
  /** Longest event (all its lines); past it the stream is refused. */
  readonly maxEvent: number;
  /** Longest line; past it the stream is refused, before the rest of the line is even read. */
  readonly maxLine: number;
}

/**
 * Splits an SSE text stream into events at blank lines (WHATWG HTML "server-sent events"), keeping the
 * exact bytes of each. eventsource-parser parses the same grammar but hands back fields, not the
 * original text, and framing must survive untouched. Each character is looked at once, however the
 * stream is cut, so a long line costs what it weighs.
 */
export class SseFramer {
  readonly #maxEvent: number;
  readonly #maxLine: number;
  readonly #lines: LineScanner;
  /** The unfinished event: its lines, its exact text so far and that text's length. */
  #eventLines: string[] = [];
  // Built by concatenation: V8 joins such strings lazily, so an event sent unchanged is copied once, on output.
  #raw = '';
  #eol = '';

  constructor(options: SseFramerOptions) {
    this.#maxEvent = options.maxEvent;
    this.#maxLine = options.maxLine;
    this.#lines = new LineScanner({ maxLine: options.maxLine, terminators: 'any' });
  }

  /** The events completed by `text`. */
  push(text: string): SseEvent[] {
    const single = this.#single(text);
    if (single !== null) return [single];
    return this.#general(text);
  }

  /**
   * The event `text` completes when it is the common chunk (one whole event of one line at an event
   * boundary), framed as `push` frames it; null for any other text, which is then framed by `push`.
   */
  single(text: string): SseEvent | null {
    return this.#single(text);
  }

  /**
   * Whether `text` would be framed as a chunk of one event at an event boundary if it is one (the
   * framer holds no unfinished line or event, and `text` is within the limits), so a caller that
   * knows the text is one whole `data:` line and its blank line may read it as `oneLineEvent`.
   */
  takesWhole(text: string): boolean {
    return this.#eventLines.length === 0 && this.#lines.idle && text.length - 2 <= this.#maxLine && text.length <= this.#maxEvent;
  }

  #general(text: string): SseEvent[] {
    const events: SseEvent[] = [];
    this.#lines.push(text, (line, eol) => {
      const ev = this.#line(line, eol);
      if (ev !== null) events.push(ev);
    });
    return events;
  }

  /** What remains at the end of the stream: an unterminated last event, or null. */
  end(): SseEvent | null {
    const completed: SseEvent[] = [];
    this.#lines.end((line, eol) => {
      const ev = this.#line(line, eol);
      if (ev !== null) completed.push(ev);
    });
    // A last line "\r" only now known to end alone: it may complete the event.
    if (this.#raw.length === 0) return completed[0] ?? null;
    const ev = parseEvent(this.#raw, this.#eventLines, this.#eol || '\n');
    this.#reset();
    return ev;
  }

  /**
   * The common chunk, one whole event of one line ("data: {…}\n\n") arriving at an event boundary,
   * framed without the line machinery; null for anything else, which the general path frames.
   */
  #single(text: string): SseEvent | null {
    const n = text.length;
    if (n < 3 || text.charCodeAt(n - 1) !== 0x0a || text.charCodeAt(n - 2) !== 0x0a) return null;
    if (this.#eventLines.length > 0 || !this.#lines.idle || text.indexOf('\n') !== n - 2 || text.indexOf('\r') !== -1) return null;
    // Past a limit, the general path refuses the stream.
    if (n - 2 > this.#maxLine || n > this.#maxEvent) return null;
    const line = text.slice(0, n - 2);
    if (!isDataLine(line)) return parseEvent(text, [line], '\n');
    // One data field: its value is the rest of the line, less one leading space (as splitField reads it).
    const data = line.charCodeAt(5) === 0x20 ? line.slice(6) : line.slice(5);
    return { raw: text, lines: [line], eol: '\n', event: undefined, data, dataOnly: true };
  }

  #line(line: string, eol: string): SseEvent | null {
    if (line === '' && eol !== '') {
      const ev = parseEvent(this.#raw + eol, this.#eventLines, this.#eol || eol);
      this.#reset();
      return ev;
    }
    this.#eventLines.push(line);
    this.#raw += line + eol;
    if (this.#eol === '') this.#eol = eol;
    if (this.#raw.length > this.#maxEvent) {
      throw new SluiceError('ERR_MASKING_BLOCKED', {
        message: `A server-sent event exceeds the masking limit of ${this.#maxEvent} characters (max_json_body)`,
      });
    }
    return null;
  }

  #reset(): void {
    this.#eventLines = [];
    this.#raw = '';
    this.#eol = '';
  }
}

function parseEvent(raw: string, lines: string[], eol: string): SseEvent {
  let event: string | undefined;
  let data: string | undefined;
  for (const line of lines) {
    const { field, value } = splitField(line);
    if (field === 'data') data = data === undefined ? value : `${data}\n${value}`;
    else if (field === 'event') event = value;
  }
  return { raw, lines, eol, event, data, dataOnly: lines.length === 1 && isDataLine(lines[0]!) };
}

/** A line's field name and value as a client reads them; a comment line has the field name "". */
export function splitField(line: string): { field: string; value: string } {
  const colon = line.indexOf(':');
  const field = colon === -1 ? line : line.slice(0, colon);
  let value = colon === -1 ? '' : line.slice(colon + 1);
  if (value.startsWith(' ')) value = value.slice(1);
  return { field, value };
}

/**
 * The event of `raw`, known to be one `data: ` line (a space after the colon) and "\n\n", as the framer
 * would give it; its line and data are cut out only if read (a masked delta reads neither).
 */
export function oneLineEvent(raw: string): SseEvent {
  return new OneLineEvent(raw);
}

class OneLineEvent implements SseEvent {
  readonly raw: string;
  readonly eol = '\n';
  readonly event = undefined;
  readonly dataOnly = true;

  constructor(raw: string) {
    this.raw = raw;
  }

  get lines(): readonly string[] {
    return [this.raw.slice(0, -2)];
  }

  get data(): string {
    return this.raw.slice(6, -2);
  }
}

/** The event with its data fields replaced by `data` (other fields and comments kept in place). */
export function withData(ev: SseEvent, data: string, oneLine = false): string {
  // The common event: one data line and nothing else. (A payload built by concatenation would be
  // copied whole just to be searched for a line break: JSON text, which has none, is not searched.)
  if (ev.dataOnly && (oneLine || !data.includes('\n'))) {
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

/** The event with its lines replaced (same terminator style); its data is read again from them. */
export function withLines(ev: SseEvent, lines: string[]): SseEvent {
  return parseEvent(lines.join(ev.eol) + ev.eol + ev.eol, lines, ev.eol);
}

/** A new event (a flushed hold-back) in the stream's line-ending style. */
export function newEvent(eventName: string | undefined, data: string, eol: string): string {
  return `${eventName === undefined ? '' : `event: ${eventName}${eol}`}data: ${data}${eol}${eol}`;
}

export function isDataLine(line: string): boolean {
  return line === 'data' || line.startsWith('data:');
}
