/** The event that carries a channel's flushed hold-back: its SSE event name and its JSON data. */
export interface FlushEvent {
  readonly event?: string;
  readonly data: Record<string, unknown>;
}

/** One delta of streamed text in an event: a choice's content, a tool call's arguments, a block's text. */
export interface DeltaSlot {
  /** The channel: one per choice and field, tool call, output item part or content block. */
  readonly key: string;
  readonly text: string;
  set(text: string): void;
  /** Builds an event carrying `text` on this channel, modelled on this event. */
  flush(text: string): FlushEvent;
}

/** What sluice understood of one event. */
export interface ShapeReading {
  /** `unknown`: masked as generic JSON, or refused with `unknown_stream: block`. */
  readonly kind: 'openai_chat' | 'openai_completion' | 'openai_responses' | 'anthropic' | 'error' | 'unknown';
  readonly slots: readonly DeltaSlot[];
  /** Whether the channel `key` ends with this event (its hold-back is flushed before or within it). */
  ends(key: string): boolean;
}

type Json = Record<string, unknown>;

const NEVER = (): boolean => false;

const ANTHROPIC_TYPES = new Set([
  'message_start',
  'content_block_start',
  'content_block_delta',
  'content_block_stop',
  'message_delta',
  'message_stop',
  'ping',
  'error',
]);

/** Anthropic delta types that carry streamed text, and the field that holds it. */
const ANTHROPIC_TEXT_FIELDS: Readonly<Record<string, string>> = {
  text_delta: 'text',
  input_json_delta: 'partial_json',
  thinking_delta: 'thinking',
};

/** Text fields of an OpenAI chat delta: content, reasoning (two spellings in use) and refusal. */
const CHAT_TEXT_FIELDS = ['content', 'reasoning_content', 'reasoning', 'refusal'] as const;

/** Reads one parsed event of an OpenAI chat, OpenAI completion, OpenAI Responses or Anthropic stream. */
export function readShape(obj: unknown): ShapeReading {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return unknown();
  const o = obj as Json;
  if (Array.isArray(o.choices) && (o.object === 'chat.completion.chunk' || o.object === undefined)) return openAiChat(o);
  if (Array.isArray(o.choices) && o.object === 'text_completion') return openAiCompletion(o);
  if (typeof o.type === 'string') {
    if (o.type.startsWith('response.')) return openAiResponses(o);
    if (ANTHROPIC_TYPES.has(o.type)) return anthropic(o);
  }
  // An error object mid-stream ({"error": {...}} from OpenAI-compatible servers) is a known shape.
  if (o.error !== undefined && Object.keys(o).length === 1) return { kind: 'error', slots: [], ends: NEVER };
  return unknown();
}

function unknown(): ShapeReading {
  return { kind: 'unknown', slots: [], ends: NEVER };
}

/** Top-level fields a flushed chunk copies (id, model, created…), without the per-chunk payload. */
function chunkTemplate(o: Json): Json {
  const t: Json = {};
  for (const [k, v] of Object.entries(o)) if (k !== 'choices' && k !== 'usage' && k !== 'obfuscation') t[k] = v;
  return t;
}

/** The object choices of an OpenAI chunk, each with its index and whether it finishes with this chunk. */
function choicesOf(o: Json): { choice: Json; idx: number; finished: boolean }[] {
  const out: { choice: Json; idx: number; finished: boolean }[] = [];
  (o.choices as unknown[]).forEach((c, ci) => {
    if (c === null || typeof c !== 'object') return;
    const choice = c as Json;
    const idx = typeof choice.index === 'number' ? choice.index : ci;
    out.push({ choice, idx, finished: choice.finish_reason !== null && choice.finish_reason !== undefined });
  });
  return out;
}

function openAiChat(o: Json): ShapeReading {
  const slots: DeltaSlot[] = [];
  const ending: string[] = [];
  for (const { choice, idx, finished } of choicesOf(o)) {
    if (finished) ending.push(`chat:${idx}:`);
    const delta = choice.delta;
    if (delta === null || typeof delta !== 'object') continue;
    const d = delta as Json;
    for (const field of CHAT_TEXT_FIELDS) {
      if (typeof d[field] !== 'string') continue;
      slots.push({
        key: `chat:${idx}:${field}`,
        text: d[field] as string,
        set: (t) => {
          d[field] = t;
        },
        flush: (t) => ({ data: { ...chunkTemplate(o), choices: [{ index: idx, delta: { [field]: t }, finish_reason: null }] } }),
      });
    }
    if (Array.isArray(d.tool_calls)) {
      d.tool_calls.forEach((tc, j) => {
        if (tc === null || typeof tc !== 'object') return;
        const call = tc as Json;
        const fn = call.function as Json | undefined;
        if (fn === null || typeof fn !== 'object' || typeof fn.arguments !== 'string') return;
        const tIdx = typeof call.index === 'number' ? call.index : j;
        slots.push({
          key: `chat:${idx}:tool:${tIdx}`,
          text: fn.arguments,
          set: (t) => {
            fn.arguments = t;
          },
          flush: (t) => ({
            data: {
              ...chunkTemplate(o),
              choices: [{ index: idx, delta: { tool_calls: [{ index: tIdx, function: { arguments: t } }] }, finish_reason: null }],
            },
          }),
        });
      });
    }
  }
  return { kind: 'openai_chat', slots, ends: (key) => ending.some((p) => key.startsWith(p)) };
}

function openAiCompletion(o: Json): ShapeReading {
  const slots: DeltaSlot[] = [];
  const ending: string[] = [];
  for (const { choice, idx, finished } of choicesOf(o)) {
    const key = `cmpl:${idx}`;
    if (finished) ending.push(key);
    if (typeof choice.text !== 'string') continue;
    slots.push({
      key,
      text: choice.text,
      set: (t) => {
        choice.text = t;
      },
      flush: (t) => ({ data: { ...chunkTemplate(o), choices: [{ index: idx, text: t, finish_reason: null }] } }),
    });
  }
  return { kind: 'openai_completion', slots, ends: (key) => ending.includes(key) };
}

/** `response.output_text`, item, output index and part: one channel per content part. */
function responsesKey(family: string, o: Json): string {
  const part = o.content_index ?? o.summary_index ?? '';
  return `resp:${family}:${String(o.item_id ?? '')}:${String(o.output_index ?? '')}:${String(part)}`;
}

function openAiResponses(o: Json): ShapeReading {
  const type = o.type as string;
  if (type.endsWith('.delta') && typeof o.delta === 'string') {
    const family = type.slice(0, -'.delta'.length);
    return {
      kind: 'openai_responses',
      slots: [
        {
          key: responsesKey(family, o),
          text: o.delta,
          set: (t) => {
            o.delta = t;
          },
          flush: (t) => {
            const data: Json = {};
            for (const [k, v] of Object.entries(o)) if (k !== 'obfuscation' && k !== 'logprobs') data[k] = v;
            data.delta = t;
            return { event: type, data };
          },
        },
      ],
      ends: NEVER,
    };
  }
  if (type.endsWith('.done')) {
    const key = responsesKey(type.slice(0, -'.done'.length), o);
    return { kind: 'openai_responses', slots: [], ends: (k) => k === key };
  }
  if (type === 'response.completed' || type === 'response.incomplete' || type === 'response.failed') {
    return { kind: 'openai_responses', slots: [], ends: (k) => k.startsWith('resp:') };
  }
  return { kind: 'openai_responses', slots: [], ends: NEVER };
}

function anthropic(o: Json): ShapeReading {
  const key = `anth:${String(o.index)}`;
  if (o.type === 'content_block_stop') return { kind: 'anthropic', slots: [], ends: (k) => k === key };
  if (o.type === 'message_stop') return { kind: 'anthropic', slots: [], ends: (k) => k.startsWith('anth:') };
  if (o.type !== 'content_block_delta' || o.delta === null || typeof o.delta !== 'object') {
    return { kind: 'anthropic', slots: [], ends: NEVER };
  }
  const delta = o.delta as Json;
  const field = typeof delta.type === 'string' ? ANTHROPIC_TEXT_FIELDS[delta.type] : undefined;
  if (field === undefined || typeof delta[field] !== 'string') return { kind: 'anthropic', slots: [], ends: NEVER };
  return {
    kind: 'anthropic',
    slots: [
      {
        key,
        text: delta[field] as string,
        set: (t) => {
          delta[field] = t;
        },
        flush: (t) => ({
          event: 'content_block_delta',
          data: { type: 'content_block_delta', index: o.index, delta: { type: delta.type, [field]: t } },
        }),
      },
    ],
    ends: NEVER,
  };
}
