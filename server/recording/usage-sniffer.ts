import type { Usage } from './event-types.js';

/** What an OpenAI-style answer says about itself. */
export interface AnswerFacts {
  model?: string;
  usage?: Usage;
  finish_reason?: string;
}

/** Most bytes of a JSON answer kept for parsing; longer answers are not parsed (their facts stay unknown). */
const MAX_JSON_BYTES = 1024 * 1024;
/** Longest SSE line kept; a longer line is skipped. */
const MAX_LINE_BYTES = 256 * 1024;

const NEWLINE = 0x0a;
const USAGE = Buffer.from('"usage":{');
const FINISH = Buffer.from('"finish_reason":"');
const MODEL = Buffer.from('"model":"');
/** What a line must hold to be parsed; the model's (first) only while the model is unknown. */
const NEEDLES = [MODEL, USAGE, FINISH] as const;

/**
 * Picks model, token usage and finish reason out of an OpenAI-style response body as it streams, with
 * bounded memory: a JSON body is kept up to 1 MiB and parsed once at the end; an SSE stream is split
 * into lines and only the `data:` lines that can hold a fact (the first with a model, any with usage or
 * a finish reason) are parsed. The lines wholly inside a chunk are not looked at one by one: each needle
 * is searched for across them, and only a line where one is found is read, so a chunk of a hundred events
 * (a burst) costs a few searches rather than a few per event.
 */
export class UsageSniffer {
  readonly #mode: 'json' | 'sse' | 'off';
  readonly #facts: AnswerFacts = {};
  #parts: Buffer[] = [];
  #bytes = 0;
  #skippingLine = false;

  /** `contentType` of the response decides how the body is read; anything else is ignored. */
  constructor(contentType: string | undefined) {
    const type = (contentType ?? '').toLowerCase();
    this.#mode = type.includes('text/event-stream') ? 'sse' : type.includes('json') ? 'json' : 'off';
  }

  /** Feeds one chunk of the body. */
  push(chunk: Buffer): void {
    if (this.#mode === 'json') {
      if (this.#bytes + chunk.length > MAX_JSON_BYTES) {
        this.#parts = [];
        this.#bytes = Infinity;
        return;
      }
      this.#parts.push(chunk);
      this.#bytes += chunk.length;
    } else if (this.#mode === 'sse') {
      let start = 0;
      const first = chunk.indexOf(NEWLINE);
      if (first === -1) {
        this.#partial(chunk);
        return;
      }
      // A line begun in an earlier chunk ends at the first line break: read as one with what came before.
      if (this.#parts.length > 0 || this.#skippingLine) {
        this.#line(chunk.subarray(0, first));
        start = first + 1;
      }
      const end = chunk.lastIndexOf(NEWLINE) + 1;
      if (end > start) this.#wholeLines(chunk, start, end);
      if (end < chunk.length) this.#partial(chunk.subarray(end));
    }
  }

  /**
   * Reads, in order, the lines in `chunk[from, to)` (whole lines, `to` just after a line break) that hold a
   * needle. Each needle's next place is searched for once and kept until the reading passes it, so a
   * needle found nowhere costs one search of the chunk.
   */
  #wholeLines(chunk: Buffer, from: number, to: number): void {
    // Each needle's next place at or after `at`: -2 not searched yet, -1 none before `to`.
    const hits = [-2, -2, -2];
    for (let at = from; at < to; ) {
      let hit = -1;
      for (let n = this.#facts.model === undefined ? 0 : 1; n < NEEDLES.length; n++) {
        let h = hits[n]!;
        if (h === -2 || (h !== -1 && h < at)) {
          h = chunk.indexOf(NEEDLES[n]!, at);
          if (h >= to) h = -1;
          hits[n] = h;
        }
        if (h !== -1 && (hit === -1 || h < hit)) hit = h;
      }
      if (hit === -1) return;
      const lineEnd = chunk.indexOf(NEWLINE, hit);
      this.#line(chunk.subarray(Math.max(from, chunk.lastIndexOf(NEWLINE, hit) + 1), lineEnd));
      at = lineEnd + 1;
    }
  }

  /** The facts found; call after the last chunk. */
  result(): AnswerFacts {
    if (this.#mode === 'json' && this.#bytes !== Infinity && this.#parts.length > 0) {
      this.#take(Buffer.concat(this.#parts).toString('utf8'));
      this.#parts = [];
    }
    return this.#facts;
  }

  #partial(piece: Buffer): void {
    if (this.#skippingLine) return;
    this.#bytes += piece.length;
    if (this.#bytes > MAX_LINE_BYTES) {
      this.#parts = [];
      this.#bytes = 0;
      this.#skippingLine = true;
      return;
    }
    this.#parts.push(piece);
  }

  #line(tail: Buffer): void {
    if (this.#skippingLine) {
      this.#skippingLine = false;
      return;
    }
    const line = this.#parts.length === 0 ? tail : Buffer.concat([...this.#parts, tail]);
    this.#parts = [];
    this.#bytes = 0;
    // `data:`, read byte by byte: this runs for every line of every answer.
    if (line.length < 6 || line[0] !== 0x64 || line[1] !== 0x61 || line[2] !== 0x74 || line[3] !== 0x61 || line[4] !== 0x3a) return;
    const wanted =
      (this.#facts.model === undefined && line.includes(MODEL)) || line.includes(USAGE) || line.includes(FINISH);
    if (!wanted) return;
    this.#take(line.subarray(5).toString('utf8').trim());
  }

  #take(json: string): void {
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch {
      return;
    }
    if (value === null || typeof value !== 'object') return;
    const v = value as { model?: unknown; usage?: unknown; choices?: unknown };
    if (typeof v.model === 'string' && this.#facts.model === undefined) this.#facts.model = v.model.slice(0, 200);
    if (v.usage !== null && typeof v.usage === 'object') {
      const u = v.usage as Record<string, unknown>;
      const usage: { -readonly [K in keyof Usage]: Usage[K] } = {};
      for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens'] as const) if (typeof u[k] === 'number') usage[k] = u[k] as number;
      if (Object.keys(usage).length > 0) this.#facts.usage = usage;
    }
    if (Array.isArray(v.choices)) {
      for (const c of v.choices as { finish_reason?: unknown }[]) {
        if (typeof c?.finish_reason === 'string') this.#facts.finish_reason = c.finish_reason;
      }
    }
  }
}
