/**
 * The answer text of the inference APIs the gateway fronts, from streamed (SSE) and whole JSON bodies:
 * for asciicast exports on the gateway and for playback and the re-send diff in the CLI.
 */
import { createParser, type EventSourceParser } from 'eventsource-parser';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The answer text one SSE `data:` payload carries: OpenAI `chat.completion.chunk` deltas (and legacy
 * completion `text`), Anthropic `content_block_delta` text deltas, OpenAI Responses text deltas;
 * '' for anything else (roles, usage, `[DONE]`, tool calls).
 */
export function sseDataText(data: string): string {
  if (data === '[DONE]') return '';
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    return '';
  }
  if (!isRecord(json)) return '';
  if (Array.isArray(json.choices)) {
    let text = '';
    for (const choice of json.choices) {
      if (!isRecord(choice)) continue;
      if (isRecord(choice.delta) && typeof choice.delta.content === 'string') text += choice.delta.content;
      else if (typeof choice.text === 'string') text += choice.text;
    }
    return text;
  }
  if (json.type === 'content_block_delta' && isRecord(json.delta) && typeof json.delta.text === 'string') return json.delta.text;
  if (json.type === 'response.output_text.delta' && typeof json.delta === 'string') return json.delta;
  return '';
}

/**
 * Answer text from SSE bytes, piece by piece. An event split across recorded chunks is credited to the
 * chunk that completes it; bytes are decoded as a stream, so a character split across chunks survives.
 */
export class SseAnswerText {
  readonly #decoder = new TextDecoder('utf-8');
  readonly #parser: EventSourceParser;
  #pending = '';

  constructor() {
    this.#parser = createParser({
      onEvent: (event) => {
        this.#pending += sseDataText(event.data);
      },
    });
  }

  /** Feeds one chunk (bytes, or text already decoded); returns the text of the events it completed. */
  push(chunk: Uint8Array | string): string {
    this.#parser.feed(typeof chunk === 'string' ? chunk : this.#decoder.decode(chunk, { stream: true }));
    const text = this.#pending;
    this.#pending = '';
    return text;
  }
}

/** The assistant's text in a whole (non-streamed) JSON answer's bytes, or undefined for other shapes. */
export function jsonAnswerText(bytes: Buffer): string | undefined {
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  return parsedAnswerText(body);
}

/** The assistant's text in a parsed JSON answer: OpenAI chat completion, Anthropic message, OpenAI Responses. */
export function parsedAnswerText(body: unknown): string | undefined {
  if (!isRecord(body)) return undefined;
  if (Array.isArray(body.choices)) {
    const parts = body.choices.flatMap((c: unknown) =>
      isRecord(c) && isRecord(c.message) && typeof c.message.content === 'string' ? [c.message.content] : isRecord(c) && typeof c.text === 'string' ? [c.text] : [],
    );
    return parts.length > 0 ? parts.join('\n') : undefined;
  }
  if (body.type === 'message' && Array.isArray(body.content)) {
    return body.content.flatMap((b: unknown) => (isRecord(b) && b.type === 'text' && typeof b.text === 'string' ? [b.text] : [])).join('');
  }
  if (typeof body.output_text === 'string') return body.output_text;
  return undefined;
}
