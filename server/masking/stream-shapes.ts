import { isLegacyLogprobs, legacyEntries, setLegacyEntries, tokenField } from './logprob-tokens.js';

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

/**
 * The tokens of a logprobs list streamed with a delta (`choices[].logprobs.content`, a legacy completion's
 * `tokens`, a Responses delta's `logprobs`, Ollama's `logprobs`), as token objects.
 */
export interface TokenSlot {
  /** The channel: the delta's channel with `:logprobs:` and the list's name. */
  readonly key: string;
  readonly entries: readonly Json[];
  /** Puts token objects in the event in place of the ones read. */
  set(entries: readonly Json[]): void;
  /** Builds an event carrying `entries` on this channel, modelled on this event. */
  flush(entries: readonly Json[]): FlushEvent;
}

/** What sluice understood of one event. */
export interface ShapeReading {
  /** `unknown`: masked channel by channel as generic JSON, or refused with `unknown_stream: block`. */
  readonly kind: 'openai_chat' | 'openai_completion' | 'openai_responses' | 'anthropic' | 'ollama' | 'error' | 'unknown';
  readonly slots: readonly DeltaSlot[];
  /** Logprobs lists streamed beside the deltas; none when the event has none. */
  readonly tokens: readonly TokenSlot[];
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

/**
 * Strings of a chat delta that name or identify rather than stream (an audio part's id and base64
 * data, a function's name): masked each on its own. Every other string of a delta is streamed text
 * (`function_call.arguments`, `audio.transcript`, fields yet to come) and gets a channel.
 */
const CHAT_DELTA_LABELS = new Set(['role', 'id', 'type', 'name', 'data', 'index', 'expires_at']);

/** Fields of a chat delta read on their own (text fields, tool calls): not searched for other strings. */
const CHAT_DELTA_KNOWN = new Set<string>([...CHAT_TEXT_FIELDS, 'tool_calls']);

/** Text fields of an Ollama `/api/chat` message and of an `/api/generate` answer. */
const OLLAMA_MESSAGE_FIELDS = ['content', 'thinking'] as const;
const OLLAMA_ANSWER_FIELDS = ['response', 'thinking'] as const;

/** How deep a chat delta is searched for streamed strings. */
const MAX_DELTA_DEPTH = 8;

/**
 * Reads one parsed event (an SSE event's data, an NDJSON line) of an OpenAI chat, OpenAI completion,
 * OpenAI Responses, Anthropic or Ollama stream.
 */
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
  if (o.error !== undefined && Object.keys(o).length === 1) return known('error', []);
  if (typeof o.done === 'boolean' && typeof o.model === 'string') return ollama(o);
  return unknown();
}

function unknown(): ShapeReading {
  return known('unknown', []);
}

function known(kind: ShapeReading['kind'], slots: DeltaSlot[], tokens: TokenSlot[] = [], ends: (key: string) => boolean = NEVER): ShapeReading {
  return { kind, slots, tokens, ends };
}

/** `{a: {b: value}}` for the path `[a, b]`. */
function nested(path: readonly string[], value: unknown): Json {
  let out: unknown = value;
  for (let i = path.length - 1; i >= 0; i--) out = { [path[i]!]: out };
  return out as Json;
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
    deltaStrings(d, [], 0, (path, holder, field) => {
      slots.push({
        key: `chat:${idx}:delta.${path.join('.')}`,
        text: holder[field] as string,
        set: (t) => {
          holder[field] = t;
        },
        flush: (t) => ({ data: { ...chunkTemplate(o), choices: [{ index: idx, delta: nested(path, t), finish_reason: null }] } }),
      });
    });
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
  return known('openai_chat', slots, chatTokens(o), (key) => ending.some((p) => key.startsWith(p)));
}

/** Strings of a chat delta outside the known fields, each with the path to it (objects only). */
function deltaStrings(d: Json, path: string[], depth: number, found: (path: string[], holder: Json, field: string) => void): void {
  if (depth > MAX_DELTA_DEPTH) return;
  for (const [k, v] of Object.entries(d)) {
    if (CHAT_DELTA_LABELS.has(k) || (depth === 0 && CHAT_DELTA_KNOWN.has(k))) continue;
    if (typeof v === 'string') found([...path, k], d, k);
    else if (v !== null && typeof v === 'object' && !Array.isArray(v)) deltaStrings(v as Json, [...path, k], depth + 1, found);
  }
}

/** `choices[].logprobs.content` and `.refusal` of a chat chunk. */
function chatTokens(o: Json): TokenSlot[] {
  const tokens: TokenSlot[] = [];
  for (const { choice, idx } of choicesOf(o)) {
    const lp = choice.logprobs;
    if (lp === null || typeof lp !== 'object' || Array.isArray(lp)) continue;
    const logprobs = lp as Json;
    for (const list of ['content', 'refusal'] as const) {
      if (tokenField(logprobs[list]) !== 'token') continue;
      tokens.push({
        key: `chat:${idx}:logprobs:${list}`,
        entries: logprobs[list] as Json[],
        set: (entries) => {
          logprobs[list] = entries;
        },
        flush: (entries) => ({
          data: { ...chunkTemplate(o), choices: [{ index: idx, delta: {}, logprobs: { [list]: entries }, finish_reason: null }] },
        }),
      });
    }
  }
  return tokens;
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
  return known('openai_completion', slots, completionTokens(o), (key) => ending.some((p) => key === p || key.startsWith(`${p}:`)));
}

/** A legacy completion chunk's `logprobs` (`tokens` and the arrays beside them). */
function completionTokens(o: Json): TokenSlot[] {
  const tokens: TokenSlot[] = [];
  for (const { choice, idx } of choicesOf(o)) {
    const lp = choice.logprobs;
    if (!isLegacyLogprobs(lp) || lp.tokens.length === 0) continue;
    tokens.push({
      key: `cmpl:${idx}:logprobs`,
      entries: legacyEntries(lp),
      set: (entries) => setLegacyEntries(lp, entries, undefined),
      flush: (entries) => {
        const logprobs: Json = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
        setLegacyEntries(logprobs, entries, undefined);
        return { data: { ...chunkTemplate(o), choices: [{ index: idx, text: '', logprobs, finish_reason: null }] } };
      },
    });
  }
  return tokens;
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
    const key = responsesKey(family, o);
    const tokens: TokenSlot[] = [];
    if (tokenField(o.logprobs) === 'token') {
      tokens.push({
        key: `${key}:logprobs`,
        entries: o.logprobs as Json[],
        set: (entries) => {
          o.logprobs = entries;
        },
        flush: (entries) => {
          const data: Json = {};
          for (const [k, v] of Object.entries(o)) if (k !== 'obfuscation') data[k] = v;
          data.delta = '';
          data.logprobs = entries;
          return { event: type, data };
        },
      });
    }
    return {
      kind: 'openai_responses',
      tokens,
      slots: [
        {
          key,
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
    return known('openai_responses', [], [], (k) => k === key || k === `${key}:logprobs`);
  }
  if (type === 'response.completed' || type === 'response.incomplete' || type === 'response.failed') {
    return known('openai_responses', [], [], (k) => k.startsWith('resp:'));
  }
  return known('openai_responses', []);
}

function anthropic(o: Json): ShapeReading {
  const key = `anth:${String(o.index)}`;
  if (o.type === 'content_block_stop') return known('anthropic', [], [], (k) => k === key);
  if (o.type === 'message_stop') return known('anthropic', [], [], (k) => k.startsWith('anth:'));
  if (o.type !== 'content_block_delta' || o.delta === null || typeof o.delta !== 'object') return known('anthropic', []);
  const delta = o.delta as Json;
  const field = typeof delta.type === 'string' ? ANTHROPIC_TEXT_FIELDS[delta.type] : undefined;
  if (field === undefined || typeof delta[field] !== 'string') return known('anthropic', []);
  return {
    kind: 'anthropic',
    tokens: [],
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

/** An Ollama `/api/chat` or `/api/generate` line: `message.content` / `response` (and their `thinking`), `logprobs`. */
function ollama(o: Json): ShapeReading {
  const slots: DeltaSlot[] = [];
  const frame = (): Json => ({ model: o.model, created_at: o.created_at, done: false });
  const message = o.message;
  if (message !== null && typeof message === 'object' && !Array.isArray(message)) {
    const m = message as Json;
    for (const field of OLLAMA_MESSAGE_FIELDS) {
      if (typeof m[field] !== 'string') continue;
      slots.push({
        key: `ollama:message.${field}`,
        text: m[field] as string,
        set: (t) => {
          m[field] = t;
        },
        flush: (t) => ({ data: { ...frame(), message: { role: m.role ?? 'assistant', content: '', [field]: t } } }),
      });
    }
  }
  for (const field of OLLAMA_ANSWER_FIELDS) {
    if (typeof o[field] !== 'string') continue;
    slots.push({
      key: `ollama:${field}`,
      text: o[field] as string,
      set: (t) => {
        o[field] = t;
      },
      flush: (t) => ({ data: { ...frame(), response: '', [field]: t } }),
    });
  }
  const tokens: TokenSlot[] = [];
  if (tokenField(o.logprobs) === 'token') {
    const inMessage = message !== null && typeof message === 'object';
    tokens.push({
      key: 'ollama:logprobs',
      entries: o.logprobs as Json[],
      set: (entries) => {
        o.logprobs = entries;
      },
      flush: (entries) => ({
        data: { ...frame(), ...(inMessage ? { message: { role: 'assistant', content: '' } } : { response: '' }), logprobs: entries },
      }),
    });
  }
  return known('ollama', slots, tokens, o.done === true ? (k) => k.startsWith('ollama:') : NEVER);
}
