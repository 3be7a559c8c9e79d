import { StringDecoder } from 'node:string_decoder';
import type { BodyMasker } from './body-masker.js';
import type { CompiledProfile } from './compiled-profile.js';
import { LineScanner } from './line-scanner.js';
import type { MaskingCounter } from './masking-summary.js';
import { StreamRecordMasker } from './stream-record-masker.js';
import { LeadingBom } from './stream-start.js';

/** RFC 7464 (application/json-seq) opens each record with this. */
const RECORD_SEPARATOR = '\u001e';

/** One line: its exact text, and what its payload is written between. */
interface Line {
  readonly raw: string;
  readonly prefix: string;
  readonly eol: string;
}

/**
 * Masks a stream of JSON records, one a line (NDJSON, JSON Lines, JSON text sequences): Ollama's
 * `/api/chat` and `/api/generate`, and any other server that streams so. Each line goes through the
 * stream's channels as an SSE event's data does, so a value split across lines is found; a line that
 * is not JSON is text of one channel. Lines are bounded by `masking.max_line`.
 */
export class NdjsonMasker implements BodyMasker {
  readonly #decoder = new StringDecoder('utf8');
  readonly #lines: LineScanner;
  readonly #records: StreamRecordMasker<Line>;
  readonly #bom = new LeadingBom();
  #eol = '\n';
  /** Whether records open with a record separator: flushed records must too. */
  #separated = false;

  constructor(profile: CompiledProfile, counter: MaskingCounter) {
    this.#lines = new LineScanner({ maxLine: profile.maxLine, terminators: 'lf' });
    this.#records = new StreamRecordMasker<Line>(profile, counter, {
      raw: (line) => line.raw,
      withData: (line, data) => line.prefix + data + line.eol,
      newRecord: (_event, data) => `${this.#separated ? RECORD_SEPARATOR : ''}${data}${this.#eol}`,
    });
  }

  write(chunk: Buffer): string {
    return this.#text(this.#decoder.write(chunk));
  }

  end(): string {
    let out = this.#text(this.#decoder.end());
    this.#lines.end((line, eol) => {
      out += this.#line(line, eol);
    });
    return out + this.#records.flushAll();
  }

  #text(text: string): string {
    const { bom, rest } = this.#bom.take(text);
    let out = bom;
    text = rest;
    this.#lines.push(text, (line, eol) => {
      out += this.#line(line, eol);
    });
    return out;
  }

  #line(line: string, eol: string): string {
    if (eol !== '') this.#eol = eol;
    const raw = line + eol;
    let data = line;
    let prefix = '';
    if (data.startsWith(RECORD_SEPARATOR)) {
      this.#separated = true;
      prefix = RECORD_SEPARATOR;
      data = data.slice(1);
    }
    if (data.trim() === '') return this.#records.pass(raw);
    return this.#records.record({ raw, prefix, eol }, data);
  }
}
