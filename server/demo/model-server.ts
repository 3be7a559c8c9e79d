import { EventEmitter } from 'node:events';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { embeddingBase64, embeddingFloats, embeddingOf, readEmbeddingsRequest } from './embedding-vectors.js';
import { readResponsesRequest, responseObject, responsesEvents, type ResponsesAnswer } from './responses-shapes.js';

export interface ModelServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  /** When set, every request must carry `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** How many content deltas a streamed answer is split into. Default 40. */
  chunks?: number;
  /** Pause between streamed chunks. Default 20 ms. */
  chunkDelayMs?: number;
  /** Largest accepted request body. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Model ids listed by `GET /v1/models`. Default `['demo-echo']`. */
  models?: string[];
  /** Length of the vectors `POST /v1/embeddings` returns when the request names no `dimensions`. Default 256. */
  embeddingDimensions?: number;
}

export interface RecordedRequest {
  /** Position in `requests`, also carried by this request's stream events. */
  id: number;
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface StreamEvent {
  requestId: number;
  /** Content deltas written so far. */
  chunks: number;
}

export interface StreamEndEvent extends StreamEvent {
  /** True when the client went away before the stream's last event was written. */
  aborted: boolean;
}

export interface ModelServerEvents {
  request: [RecordedRequest];
  /** A content delta was handed to the socket. */
  'stream-chunk': [StreamEvent];
  /** The last byte of a stream was written (`data: [DONE]`, `response.completed`), or the client left early. */
  'stream-end': [StreamEndEvent];
}

export interface RunningModelServer {
  /** Base URL, e.g. `http://127.0.0.1:PORT`; the OpenAI SDK's baseURL is `url + '/v1'`. */
  url: string;
  /** Every request received, in order, body included (bodies over the limit are not recorded). */
  requests: RecordedRequest[];
  events: EventEmitter<ModelServerEvents>;
  close(): Promise<void>;
}

interface ChatMessage {
  role?: unknown;
  content?: unknown;
}

/** Fake personal data in every answer, so masking has something to find. */
export const DEMO_PII = {
  email: 'jane.doe@example.com',
  phone: '+1 415 555 0100',
  card: '4111 1111 1111 1111',
  ip: '10.1.2.3',
} as const;

const CREATED = 1_700_000_000;
const MAX_DELAY_MS = 60_000;

/**
 * Starts an OpenAI-compatible demo model whose answers echo the last user message and carry fake PII:
 * chat completions and Responses (streamed and not), embeddings and the model list.
 */
export async function startModelServer(options: ModelServerOptions = {}): Promise<RunningModelServer> {
  const chunkCount = Math.max(1, options.chunks ?? 40);
  const chunkDelayMs = Math.max(0, options.chunkDelayMs ?? 20);
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  const models = options.models ?? ['demo-echo'];
  const defaultModel = models[0] ?? 'demo-echo';
  const embeddingDimensions = options.embeddingDimensions ?? 256;
  const requests: RecordedRequest[] = [];
  const events = new EventEmitter<ModelServerEvents>();
  // Aborted on close so no answer is still waiting on a timer after the server is gone.
  const closing = new AbortController();

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendError(res, 500, String((err as Error)?.message ?? err), 'server_error', 'internal_error');
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const body = await readBody(req, maxBodyBytes);
    if (body === undefined) {
      res.setHeader('connection', 'close');
      sendError(res, 413, `Request body exceeds ${maxBodyBytes} bytes`, 'invalid_request_error', 'request_too_large');
      return;
    }
    const recorded: RecordedRequest = { id: requests.length, method, path, headers: { ...req.headers }, body };
    requests.push(recorded);
    events.emit('request', recorded);

    if (options.apiKey !== undefined && req.headers.authorization !== `Bearer ${options.apiKey}`) {
      sendError(res, 401, 'Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key');
      return;
    }

    const delayMs = Number(req.headers['x-demo-delay-ms'] ?? 0);
    if (Number.isFinite(delayMs) && delayMs > 0) {
      if (!(await sleep(Math.min(delayMs, MAX_DELAY_MS), res))) return;
    }

    if (method === 'GET' && path === '/v1/models') {
      sendJson(res, 200, { object: 'list', data: models.map(modelObject) });
      return;
    }
    if (method === 'GET' && path.startsWith('/v1/models/')) {
      const id = decodeURIComponent(path.slice('/v1/models/'.length));
      if (models.includes(id)) sendJson(res, 200, modelObject(id));
      else sendError(res, 404, `The model '${id}' does not exist`, 'invalid_request_error', 'model_not_found');
      return;
    }
    if (method === 'POST' && path === '/v1/chat/completions') {
      await chatCompletion(recorded, res);
      return;
    }
    if (method === 'POST' && path === '/v1/responses') {
      await response(recorded, res);
      return;
    }
    if (method === 'POST' && path === '/v1/embeddings') {
      embeddings(recorded, res);
      return;
    }
    sendError(res, 404, `Unknown request URL: ${method} ${path}.`, 'invalid_request_error', 'unknown_url');
  }

  async function chatCompletion(recorded: RecordedRequest, res: ServerResponse): Promise<void> {
    let parsed: { model?: unknown; messages?: unknown; stream?: unknown; stream_options?: { include_usage?: unknown } };
    try {
      parsed = JSON.parse(recorded.body) as typeof parsed;
    } catch {
      sendError(res, 400, 'The request body is not valid JSON.', 'invalid_request_error', 'invalid_json');
      return;
    }
    if (parsed === null || typeof parsed !== 'object' || !Array.isArray(parsed.messages) || parsed.messages.length === 0) {
      sendError(res, 400, "'messages' must be a non-empty array.", 'invalid_request_error', 'invalid_messages');
      return;
    }
    const messages = parsed.messages as ChatMessage[];
    const model = typeof parsed.model === 'string' ? parsed.model : models[0] ?? 'demo-echo';
    const answer = answerFor(messages);
    const usage = {
      prompt_tokens: messages.reduce((sum, m) => sum + countTokens(textOf(m.content)), 0),
      completion_tokens: countTokens(answer),
      total_tokens: 0,
    };
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    const id = `chatcmpl-demo-${recorded.id}`;

    if (parsed.stream !== true) {
      sendJson(res, 200, {
        id,
        object: 'chat.completion',
        created: CREATED,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: answer, refusal: null }, logprobs: null, finish_reason: 'stop' }],
        usage,
      });
      return;
    }

    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const includeUsage = parsed.stream_options?.include_usage === true;
    const chunk = (delta: object, finishReason: string | null) => ({
      id,
      object: 'chat.completion.chunk',
      created: CREATED,
      model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...(includeUsage ? { usage: null } : {}),
    });
    const pieces = splitInto(answer, chunkCount);
    let written = 0;
    const finish = (aborted: boolean): void => void events.emit('stream-end', { requestId: recorded.id, chunks: written, aborted });

    if (!(await writeEvent(res, chunk({ role: 'assistant', content: '' }, null)))) return finish(true);
    for (const piece of pieces) {
      if (!(await sleep(chunkDelayMs, res))) return finish(true);
      if (!(await writeEvent(res, chunk({ content: piece }, null)))) return finish(true);
      written += 1;
      events.emit('stream-chunk', { requestId: recorded.id, chunks: written });
    }
    if (!(await writeEvent(res, chunk({}, 'stop')))) return finish(true);
    if (includeUsage) {
      const usageChunk = { id, object: 'chat.completion.chunk', created: CREATED, model, choices: [], usage };
      if (!(await writeEvent(res, usageChunk))) return finish(true);
    }
    if (!(await writeRaw(res, 'data: [DONE]\n\n'))) return finish(true);
    res.end();
    finish(false);
  }

  /** `POST /v1/responses`: the same answer as chat, as a `Response` object or its stream of events. */
  async function response(recorded: RecordedRequest, res: ServerResponse): Promise<void> {
    const body = parseJson(recorded.body, res);
    if (body === undefined) return;
    const request = readResponsesRequest(body, defaultModel);
    if ('error' in request) {
      sendError(res, 400, request.error, 'invalid_request_error', request.code);
      return;
    }
    const text = answerTo(request.question);
    const answer: ResponsesAnswer = {
      request,
      id: `resp_demo_${recorded.id}`,
      itemId: `msg_demo_${recorded.id}`,
      createdAt: CREATED,
      text,
      inputTokens: countTokens(request.inputText),
      outputTokens: countTokens(text),
    };
    if (!request.stream) {
      sendJson(res, 200, responseObject(answer, true));
      return;
    }

    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const { before, deltas, after } = responsesEvents(answer, splitInto(text, chunkCount));
    let written = 0;
    const finish = (aborted: boolean): void => void events.emit('stream-end', { requestId: recorded.id, chunks: written, aborted });
    // Named events, as OpenAI sends them; the stream ends with response.completed, never `data: [DONE]`.
    const send = (event: { type: string }) => writeRaw(res, `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);

    for (const event of before) if (!(await send(event))) return finish(true);
    for (const delta of deltas) {
      if (!(await sleep(chunkDelayMs, res))) return finish(true);
      if (!(await send(delta))) return finish(true);
      written += 1;
      events.emit('stream-chunk', { requestId: recorded.id, chunks: written });
    }
    for (const event of after) if (!(await send(event))) return finish(true);
    res.end();
    finish(false);
  }

  /** `POST /v1/embeddings`: one deterministic vector per input, as floats or base64 float32. */
  function embeddings(recorded: RecordedRequest, res: ServerResponse): void {
    const body = parseJson(recorded.body, res);
    if (body === undefined) return;
    const request = readEmbeddingsRequest(body, { model: defaultModel, dimensions: embeddingDimensions });
    if ('error' in request) {
      sendError(res, 400, request.error, 'invalid_request_error', request.code);
      return;
    }
    const tokens = request.inputs.reduce((sum, input) => sum + (typeof input === 'string' ? countTokens(input) : input.length), 0);
    sendJson(res, 200, {
      object: 'list',
      data: request.inputs.map((input, index) => {
        const vector = embeddingOf(input, request.dimensions);
        return { object: 'embedding', index, embedding: request.encoding === 'base64' ? embeddingBase64(vector) : embeddingFloats(vector) };
      }),
      model: request.model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
  }

  /** Resolves false when the client left or the server is closing, so callers stop writing. */
  function sleep(ms: number, res: ServerResponse): Promise<boolean> {
    if (ms <= 0) return Promise.resolve(!res.destroyed);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        res.off('close', onClose);
        closing.signal.removeEventListener('abort', onClose);
        resolve(ok);
      };
      const onClose = () => done(false);
      const timer = setTimeout(() => done(!res.destroyed), ms);
      res.once('close', onClose);
      closing.signal.addEventListener('abort', onClose, { once: true });
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  return {
    url: `http://${host}:${address.port}`,
    requests,
    events,
    close: () =>
      new Promise<void>((resolve, reject) => {
        closing.abort();
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/**
 * Reads the body as UTF-8, or resolves undefined once it exceeds the limit. The rest is read and dropped
 * rather than left unread, so the client finishes sending and sees the 413 instead of a reset socket.
 */
function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    let parts: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (part: Buffer) => {
      if (over) return;
      size += part.length;
      if (size > limit) {
        over = true;
        parts = [];
        resolve(undefined);
        return;
      }
      parts.push(part);
    });
    req.on('end', () => {
      if (!over) resolve(Buffer.concat(parts).toString('utf8'));
    });
    req.on('error', reject);
  });
}

function answerFor(messages: ChatMessage[]): string {
  const lastUser = [...messages].reverse().find((m) => m.role === 'user');
  return answerTo(lastUser ? textOf(lastUser.content) : '');
}

/** Every answer of the demo model, whatever the API: the question quoted, then the fake PII. */
function answerTo(question: string): string {
  return (
    `You said: "${question.trim()}". ` +
    `Here is the customer record you asked about: Jane Doe, email ${DEMO_PII.email}, phone ${DEMO_PII.phone}, ` +
    `card ${DEMO_PII.card}, last seen from ${DEMO_PII.ip}. ` +
    'This answer comes from the sluice demo model.'
  );
}

/** Message content is a string or an array of parts; only text parts count. */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part: { type?: unknown; text?: unknown }) => (part?.type === 'text' && typeof part.text === 'string' ? part.text : ''))
      .join(' ');
  }
  return '';
}

function countTokens(text: string): number {
  return text.split(/\s+/).filter(Boolean).length;
}

/** Splits by code point (never inside a surrogate pair) into `count` pieces of near-equal length. */
function splitInto(text: string, count: number): string[] {
  const chars = Array.from(text);
  const n = Math.min(count, chars.length);
  const pieces: string[] = [];
  for (let i = 0; i < n; i += 1) {
    pieces.push(chars.slice(Math.floor((i * chars.length) / n), Math.floor(((i + 1) * chars.length) / n)).join(''));
  }
  return pieces;
}

function writeEvent(res: ServerResponse, payload: object): Promise<boolean> {
  return writeRaw(res, `data: ${JSON.stringify(payload)}\n\n`);
}

/** Writes and waits for drain when the socket buffer is full, so a slow reader slows this writer. */
function writeRaw(res: ServerResponse, text: string): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  if (res.write(text)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onDrain = () => {
      res.off('close', onClose);
      resolve(true);
    };
    const onClose = () => {
      res.off('drain', onDrain);
      resolve(false);
    };
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}

function modelObject(id: string): object {
  return { id, object: 'model', created: CREATED, owned_by: 'sluice-demo' };
}

/** The parsed body, or undefined once a 400 has been sent for a body that is not JSON. */
function parseJson(body: string, res: ServerResponse): unknown {
  try {
    return JSON.parse(body) as unknown;
  } catch {
    sendError(res, 400, 'The request body is not valid JSON.', 'invalid_request_error', 'invalid_json');
    return undefined;
  }
}

function sendJson(res: ServerResponse, status: number, body: object): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, message: string, type: string, code: string): void {
  sendJson(res, status, { error: { message, type, param: null, code } });
}
