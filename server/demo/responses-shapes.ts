/**
 * The OpenAI Responses API as the demo model speaks it: the `Response` object of `POST /v1/responses`
 * and the server-sent events of its streamed form, shaped as the `openai` SDK's types declare them
 * (`Response`, `ResponseStreamEvent`), so the SDK's stream accumulator and other clients (the Vercel AI
 * SDK, LangChain) read them as they read OpenAI's own.
 */

type Json = Record<string, unknown>;

/** What `POST /v1/responses` asked for, read from its body. */
export interface ResponsesRequest {
  model: string;
  /** The last user message's text, which the answer quotes. */
  question: string;
  /** Every text of the input and the instructions, for `usage.input_tokens`. */
  inputText: string;
  stream: boolean;
  /** Echoed back in the `Response`, as OpenAI does. */
  instructions: string | null;
  maxOutputTokens: number | null;
  temperature: number;
  topP: number;
  metadata: Json;
  store: boolean;
}

/** Reads a Responses request body, or returns the message of the 400 it deserves. */
export function readResponsesRequest(body: unknown, defaultModel: string): ResponsesRequest | { error: string; code: string } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return { error: 'The request body must be a JSON object.', code: 'invalid_request' };
  }
  const b = body as Json;
  const input = b.input;
  if (typeof input !== 'string' && !(Array.isArray(input) && input.length > 0)) {
    return { error: "'input' must be a string or a non-empty array of input items.", code: 'invalid_input' };
  }
  if (b.instructions !== undefined && b.instructions !== null && typeof b.instructions !== 'string') {
    return { error: "'instructions' must be a string.", code: 'invalid_instructions' };
  }
  const instructions = typeof b.instructions === 'string' ? b.instructions : null;
  const items = typeof input === 'string' ? [{ role: 'user', content: input }] : (input as unknown[]);
  const lastUser = [...items].reverse().find((item) => isMessage(item) && item.role === 'user') as Json | undefined;
  return {
    model: typeof b.model === 'string' ? b.model : defaultModel,
    question: lastUser ? contentText(lastUser.content) : '',
    inputText: [instructions ?? '', ...items.map((item) => (isMessage(item) ? contentText(item.content) : ''))].join(' '),
    stream: b.stream === true,
    instructions,
    maxOutputTokens: typeof b.max_output_tokens === 'number' ? b.max_output_tokens : null,
    temperature: typeof b.temperature === 'number' ? b.temperature : 1,
    topP: typeof b.top_p === 'number' ? b.top_p : 1,
    metadata: b.metadata !== null && typeof b.metadata === 'object' && !Array.isArray(b.metadata) ? (b.metadata as Json) : {},
    store: b.store !== false,
  };
}

/** An input item that is a message: `{role, content}` with or without `type: "message"`. */
function isMessage(item: unknown): item is Json {
  if (item === null || typeof item !== 'object') return false;
  const o = item as Json;
  return typeof o.role === 'string' && (o.type === undefined || o.type === 'message');
}

/** A message's content is a string or a list of parts; the text parts (input, output, plain) count. */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part: { type?: unknown; text?: unknown }) =>
      (part?.type === 'input_text' || part?.type === 'output_text' || part?.type === 'text') && typeof part.text === 'string' ? part.text : '',
    )
    .filter(Boolean)
    .join(' ');
}

/** The fixed parts of one answer: ids, timestamps and token counts. */
export interface ResponsesAnswer {
  request: ResponsesRequest;
  /** `resp_…`. */
  id: string;
  /** `msg_…`, the id of the one output message. */
  itemId: string;
  createdAt: number;
  text: string;
  inputTokens: number;
  outputTokens: number;
}

/** The `output_text` content part holding `text`. */
function outputText(text: string): Json {
  return { type: 'output_text', annotations: [], logprobs: [], text };
}

/** The output message, in progress (no content yet) or completed with the whole text. */
function outputMessage(answer: ResponsesAnswer, done: boolean): Json {
  return {
    id: answer.itemId,
    type: 'message',
    status: done ? 'completed' : 'in_progress',
    content: done ? [outputText(answer.text)] : [],
    role: 'assistant',
  };
}

/** The `Response` object: in progress (no output, no usage, as in `response.created`) or completed. */
export function responseObject(answer: ResponsesAnswer, done: boolean): Json {
  const { request } = answer;
  return {
    id: answer.id,
    object: 'response',
    created_at: answer.createdAt,
    status: done ? 'completed' : 'in_progress',
    background: false,
    completed_at: done ? answer.createdAt : null,
    error: null,
    incomplete_details: null,
    instructions: request.instructions,
    max_output_tokens: request.maxOutputTokens,
    model: request.model,
    output: done ? [outputMessage(answer, true)] : [],
    parallel_tool_calls: true,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    service_tier: 'default',
    store: request.store,
    temperature: request.temperature,
    text: { format: { type: 'text' }, verbosity: 'medium' },
    tool_choice: 'auto',
    tools: [],
    top_p: request.topP,
    truncation: 'disabled',
    usage: done
      ? {
          input_tokens: answer.inputTokens,
          input_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 },
          output_tokens: answer.outputTokens,
          output_tokens_details: { reasoning_tokens: 0 },
          total_tokens: answer.inputTokens + answer.outputTokens,
        }
      : null,
    user: null,
    metadata: request.metadata,
  };
}

/** One event of a streamed answer: its SSE `event:` name is its `type`. */
export interface ResponsesEvent extends Json {
  type: string;
  sequence_number: number;
}

/**
 * The events of a streamed answer in OpenAI's order: created, in_progress, output_item.added,
 * content_part.added, one output_text.delta per piece, output_text.done, content_part.done,
 * output_item.done, completed (with usage). Numbered from 0 as OpenAI numbers them.
 */
export function responsesEvents(answer: ResponsesAnswer, pieces: readonly string[]): { before: ResponsesEvent[]; deltas: ResponsesEvent[]; after: ResponsesEvent[] } {
  let sequence = 0;
  const event = (type: string, fields: Json): ResponsesEvent => ({ type, sequence_number: sequence++, ...fields });
  const part = { item_id: answer.itemId, output_index: 0, content_index: 0 };
  const before = [
    event('response.created', { response: responseObject(answer, false) }),
    event('response.in_progress', { response: responseObject(answer, false) }),
    event('response.output_item.added', { output_index: 0, item: outputMessage(answer, false) }),
    event('response.content_part.added', { ...part, part: outputText('') }),
  ];
  const deltas = pieces.map((delta) => event('response.output_text.delta', { ...part, delta, logprobs: [] }));
  const after = [
    event('response.output_text.done', { ...part, text: answer.text, logprobs: [] }),
    event('response.content_part.done', { ...part, part: outputText(answer.text) }),
    event('response.output_item.done', { output_index: 0, item: outputMessage(answer, true) }),
    event('response.completed', { response: responseObject(answer, true) }),
  ];
  return { before, deltas, after };
}
