import { SluiceError } from '../../shared/errors.js';
import type { EventFields, RecordedEvent } from './event-types.js';
import { jsonAnswerText, SseAnswerText } from '../../shared/answer-text.js';
import { exchangeSelector, ExchangeTracker } from './export-exchanges.js';

/** Options of the asciicast export. */
export interface AsciicastOptions {
  readonly sessionId: string;
  /** Milliseconds since the epoch; event `t` counts from here. */
  readonly startedAt: number;
  /** `?exchange=`: a 1-based position or an exchange id; default the first streamed exchange. */
  readonly exchange?: string;
  /** Largest non-streamed answer gathered to extract its text; default 16 MiB. */
  readonly maxAnswerBytes?: number;
  /** Terminal size in the header; default 80×24. */
  readonly width?: number;
  readonly height?: number;
}

/** A chunk run's bytes split back into its chunks, each at its own session time. */
export function runChunks(e: RecordedEvent<'exchange.chunk'>): { t: number; bytes: Buffer }[] {
  const payload = e.payload ?? Buffer.alloc(0);
  const parts = e.fields.parts;
  if (parts === undefined || parts.length === 0) return [{ t: e.t, bytes: payload }];
  const out: { t: number; bytes: Buffer }[] = [];
  let at = 0;
  for (const [offset, length] of parts) {
    out.push({ t: e.t + offset, bytes: payload.subarray(at, at + length) });
    at += length;
  }
  return out;
}

/** Terminals need a carriage return with each line feed, or lines step right. */
function terminalText(text: string): string {
  return text.replace(/\r?\n/g, '\r\n');
}

/**
 * asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/) of one exchange's answer text: a header
 * line, then `[seconds, "o", text]` per recorded chunk that carried text, timed from the moment the
 * request was recorded, so the first-token wait and the inter-chunk pace play as they happened. Text is
 * extracted from OpenAI and Anthropic stream deltas; a non-streamed answer is one event at its arrival.
 * Nothing is yielded until the first text is known, so "no such answer" is an error, not an empty cast.
 */
export async function* asciicastLines(events: AsyncIterable<RecordedEvent>, options: AsciicastOptions): AsyncGenerator<string> {
  const pick = exchangeSelector(options.exchange);
  const maxAnswer = options.maxAnswerBytes ?? 16 * 1024 * 1024;
  const tracker = new ExchangeTracker();
  let chosen: { id: string; index: number; requestT: number; streamed: boolean; title: string } | undefined;
  let headerOut = false;
  const sse = new SseAnswerText();
  const whole: Buffer[] = [];
  let wholeBytes = 0;
  let lastT = 0;

  const header = (): string =>
    `${JSON.stringify({
      version: 2,
      width: options.width ?? 80,
      height: options.height ?? 24,
      timestamp: Math.floor((options.startedAt + chosen!.requestT) / 1000),
      title: chosen!.title,
    })}\n`;
  const event = (t: number, text: string): string => `${JSON.stringify([Math.max(0, t - chosen!.requestT) / 1000, 'o', terminalText(text)])}\n`;

  for await (const e of events) {
    tracker.observe(e);
    const id = (e.fields as { exchange?: unknown }).exchange;
    if (chosen === undefined) {
      if (e.type !== 'exchange.response' || typeof id !== 'string') continue;
      const x = tracker.find(id)!;
      if (pick === undefined ? !x.streamed : !pick(x)) continue;
      chosen = { id, index: x.index, requestT: x.t, streamed: x.streamed, title: `${options.sessionId} #${x.index} ${x.method} ${x.path}`.trim() };
      continue;
    }
    if (id !== chosen.id) continue;
    if (e.type === 'exchange.chunk') {
      const chunk = e as RecordedEvent<'exchange.chunk'>;
      if (chunk.fields.dir !== 'down' || chunk.payload === undefined) continue;
      for (const c of runChunks(chunk)) {
        lastT = c.t;
        if (!chosen.streamed) {
          wholeBytes += c.bytes.length;
          if (wholeBytes <= maxAnswer) whole.push(c.bytes);
          continue;
        }
        const text = sse.push(c.bytes);
        if (text === '') continue;
        if (!headerOut) {
          headerOut = true;
          yield header();
        }
        yield event(c.t, text);
      }
    } else if (e.type === 'exchange.end' || e.type === 'exchange.error') {
      if (!chosen.streamed && wholeBytes > 0 && wholeBytes <= maxAnswer) {
        const text = jsonAnswerText(Buffer.concat(whole)) ?? Buffer.concat(whole).toString('utf8');
        if (text !== '') {
          headerOut = true;
          yield header();
          yield event(lastT, text);
        }
      }
      if (headerOut) {
        // The cast lasts until the exchange ended, so a player shows the whole duration.
        const end = e.type === 'exchange.end' ? (e.fields as EventFields['exchange.end']).duration_ms + chosen.requestT : e.t;
        yield event(Math.max(end, lastT), '\n');
      }
      break;
    }
  }

  if (chosen === undefined) {
    throw new SluiceError('ERR_NOT_FOUND', {
      message:
        options.exchange === undefined
          ? `Session ${options.sessionId} has no streamed answer`
          : `Session ${options.sessionId} has no answered exchange ${options.exchange}`,
    });
  }
  if (!headerOut) {
    throw new SluiceError('ERR_NOT_FOUND', {
      message: `The answer text of exchange #${chosen.index} of session ${options.sessionId} was not recorded (the connection records response bodies masked or not at all, or the answer carries no text)`,
    });
  }
}
