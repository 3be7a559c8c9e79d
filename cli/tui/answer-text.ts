import { createParser, type EventSourceParser } from 'eventsource-parser';

/**
 * Pulls the answer's text out of streamed (SSE) and whole JSON responses of the inference APIs the
 * gateway fronts, so playback and the re-send diff show words, not wire frames.
 */

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Text carried by one parsed SSE `data:` payload, or '' when it carries none (role, usage, [DONE]). */
export function sseDataText(data: string): string {
  if (data === '[DONE]') return '';
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    return '';
  }
  if (!isRecord(json)) return '';
  // OpenAI chat.completion.chunk: choices[].delta.content
  if (Array.isArray(json.choices)) {
    let text = '';
    for (const choice of json.choices) {
      if (!isRecord(choice)) continue;
      const delta = choice.delta;
      if (isRecord(delta) && typeof delta.content === 'string') text += delta.content;
      // Legacy completions stream `text` per choice.
      else if (typeof choice.text === 'string') text += choice.text;
    }
    return text;
  }
  // Anthropic messages: content_block_delta with a text_delta.
  if (json.type === 'content_block_delta' && isRecord(json.delta) && typeof json.delta.text === 'string') {
    return json.delta.text;
  }
  // OpenAI Responses API.
  if (json.type === 'response.output_text.delta' && typeof json.delta === 'string') return json.delta;
  return '';
}

/**
 * Turns SSE bytes into answer text chunk by chunk. An SSE event may be split across recorded chunks,
 * so the parser keeps the partial event and its text is credited to the chunk that completes it.
 */
export class SseTextExtractor {
  readonly #parser: EventSourceParser;
  #pending = '';

  constructor() {
    this.#parser = createParser({
      onEvent: (event) => {
        this.#pending += sseDataText(event.data);
      },
    });
  }

  /** Feeds one recorded chunk; returns the text of the events it completed. */
  push(data: string): string {
    this.#parser.feed(data);
    const text = this.#pending;
    this.#pending = '';
    return text;
  }
}

/** The assistant's text in a whole (non-streamed) JSON answer, or undefined for other shapes. */
export function jsonAnswerText(body: unknown): string | undefined {
  if (!isRecord(body)) return undefined;
  // OpenAI chat.completion
  if (Array.isArray(body.choices)) {
    const parts: string[] = [];
    for (const choice of body.choices) {
      if (!isRecord(choice)) continue;
      if (isRecord(choice.message) && typeof choice.message.content === 'string') parts.push(choice.message.content);
      else if (typeof choice.text === 'string') parts.push(choice.text);
    }
    return parts.length > 0 ? parts.join('\n') : undefined;
  }
  // Anthropic message: content blocks of type text.
  if (body.type === 'message' && Array.isArray(body.content)) {
    return body.content
      .filter((b): b is { text: string } => isRecord(b) && b.type === 'text' && typeof b.text === 'string')
      .map((b) => b.text)
      .join('');
  }
  // OpenAI Responses API convenience field.
  if (typeof body.output_text === 'string') return body.output_text;
  return undefined;
}
