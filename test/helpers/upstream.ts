import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { listenOnLoopback } from './loopback.js';

/** One request as the upstream received it. */
export interface ReceivedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** A small OpenAI-compatible model server on 127.0.0.1:0 whose behaviour tests can steer. */
export interface TestUpstream {
  readonly url: string;
  readonly port: number;
  readonly requests: ReceivedRequest[];
  /** Streamed completions stop after their first chunk until `release()` is called. */
  holdStreams(): void;
  release(): void;
  /** How many streamed completions have sent their last event. */
  readonly streamsFinished: number;
  /** How many `/bytes/:n` responses were written to the end (the socket took every byte). */
  readonly bytesResponsesFinished: number;
  close(): Promise<void>;
}

/**
 * Routes: `POST /v1/chat/completions` (JSON or SSE by the request's `stream`), `ANY /echo` (the body back),
 * `GET /hang` (never answers), `GET /reset` (head and one chunk, then a reset), `GET /bytes/:n` (n bytes),
 * anything else answers JSON describing the request.
 */
export async function startTestUpstream(): Promise<TestUpstream> {
  const requests: ReceivedRequest[] = [];
  const sockets = new Set<Socket>();
  let gate: { promise: Promise<void>; resolve: () => void } | null = null;
  let streamsFinished = 0;
  let bytesResponsesFinished = 0;

  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/echo' || req.url?.startsWith('/echo?')) {
      requests.push({ method: req.method ?? '', url: req.url, headers: req.headers, body: Buffer.alloc(0) });
      res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'application/octet-stream' });
      req.pipe(res);
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });

    if (req.url === '/hang') return;
    if (req.url === '/reset') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"partial":true}\n\n', () => setTimeout(() => req.socket.destroy(), 20));
      return;
    }
    const bytes = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
    if (bytes) {
      const n = Number(bytes[1]);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
      res.on('finish', () => bytesResponsesFinished++);
      res.end(Buffer.alloc(n, 0x61));
      return;
    }
    if (req.method === 'POST' && req.url === '/v1/chat/completions') {
      const input = JSON.parse(body.toString('utf8')) as { model: string; stream?: boolean };
      if (input.stream === true) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-request-id': 'upstream-123' });
        const event = (delta: Record<string, unknown>, finish: string | null) =>
          `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: input.model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
        res.write(event({ role: 'assistant', content: 'Hel' }, null));
        if (gate !== null) await gate.promise;
        res.write(event({ content: 'lo' }, null));
        res.write(event({}, 'stop'));
        res.end('data: [DONE]\n\n');
        streamsFinished++;
        return;
      }
      const answer = JSON.stringify({
        id: 'chatcmpl-1',
        object: 'chat.completion',
        created: 1,
        model: input.model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'Hello' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
      });
      res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'upstream-123', 'set-cookie': ['a=1', 'b=2'] });
      res.end(answer);
      return;
    }
    const described = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, bodyBytes: body.length });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(described);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const port = await listenOnLoopback(server);

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    holdStreams() {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      gate = { promise, resolve };
    },
    release() {
      gate?.resolve();
      gate = null;
    },
    get streamsFinished() {
      return streamsFinished;
    },
    get bytesResponsesFinished() {
      return bytesResponsesFinished;
    },
    async close() {
      gate?.resolve();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
