// Child process: the upstreams the bench measures against.
//
//  - `fast`: a minimal OpenAI-shaped server (POST /v1/chat/completions, stream false) answering a fixed,
//    pre-serialised JSON body. It does as little work as possible so that the gateway's own overhead is
//    what the non-streaming comparison shows. It checks the API key the gateway injects, so a request
//    that reached it without the connection's credential (or with the caller's token) is an error (401).
//  - `model`: the project's demo model server (`startModelServer`) for 100-chunk SSE answers.
//
// Started by run.js with fork(); reports its URLs over IPC and exits when the parent says so or goes away.
import { createServer } from 'node:http';
import { startModelServer } from '../dist/server/demo/model-server.js';

const FAST_KEY = process.env.BENCH_FAST_KEY ?? 'bench-fast-key';
const MODEL_KEY = process.env.BENCH_MODEL_KEY ?? 'bench-model-key';
const CHUNKS = Number(process.env.BENCH_CHUNKS ?? 100);
const CHUNK_DELAY_MS = Number(process.env.BENCH_CHUNK_DELAY_MS ?? 0);

/** The fixed answer, shaped like the demo model's non-streamed chat completion. */
export const FAST_ANSWER = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1_700_000_000,
  model: 'bench-fast',
  choices: [
    {
      index: 0,
      // PII in the answer, as in the answers the gateway is measured on (bench/pii-profile.js names it).
      message: { role: 'assistant', content: 'Hello from the bench upstream. Write to jane.doe@example.com or call +1 415 555 0100.', refusal: null },
      logprobs: null,
      finish_reason: 'stop',
    },
  ],
  usage: { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 },
});
const FAST_ANSWER_BYTES = Buffer.from(FAST_ANSWER);
const FAST_HEADERS = { 'content-type': 'application/json', 'content-length': FAST_ANSWER_BYTES.length };
const UNAUTHORIZED = JSON.stringify({ error: { message: 'bad api key', type: 'invalid_request_error', code: 'invalid_api_key' } });

function startFast() {
  let requests = 0;
  let connections = 0;
  const server = createServer((req, res) => {
    requests += 1;
    // Drain the request body without buffering it; answer once it is all in (as a real server would).
    req.on('data', () => undefined);
    req.on('end', () => {
      if (req.headers.authorization !== `Bearer ${FAST_KEY}`) {
        res.writeHead(401, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(UNAUTHORIZED) });
        res.end(UNAUTHORIZED);
        return;
      }
      if (req.method === 'POST' && req.url === '/v1/chat/completions') {
        res.writeHead(200, FAST_HEADERS);
        res.end(FAST_ANSWER_BYTES);
        return;
      }
      res.writeHead(404, { 'content-length': 0 });
      res.end();
    });
  });
  server.on('connection', () => {
    connections += 1;
  });
  // Keep idle sockets (the gateway's pool, autocannon's connections) open between measurements.
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 130_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        url: `http://127.0.0.1:${port}`,
        requests: () => requests,
        connections: () => connections,
        close: () =>
          new Promise((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

const fast = await startFast();
const model = await startModelServer({ chunks: CHUNKS, chunkDelayMs: CHUNK_DELAY_MS, apiKey: MODEL_KEY });
let modelRequests = 0;
let modelAborted = 0;
model.events.on('request', () => {
  modelRequests += 1;
});
model.events.on('stream-end', (event) => {
  if (event.aborted) modelAborted += 1;
});
// The demo model keeps every request in `requests`; trim it so a long run does not grow this process.
const trim = setInterval(() => {
  if (model.requests.length > 1000) model.requests.length = 0;
}, 1000);
trim.unref();

let closing = false;
async function shutdown(code) {
  if (closing) return;
  closing = true;
  const force = setTimeout(() => process.exit(code), 3000);
  force.unref();
  await Promise.allSettled([fast.close(), model.close()]);
  process.exit(code);
}

process.on('message', (msg) => {
  if (msg?.type === 'shutdown') void shutdown(0);
  if (msg?.type === 'stats') {
    process.send?.({
      type: 'stats',
      id: msg.id,
      fast: { requests: fast.requests(), connections: fast.connections() },
      model: { requests: modelRequests, aborted_streams: modelAborted },
    });
  }
});
// The parent went away (crashed or killed): never outlive it.
process.on('disconnect', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));
process.on('SIGINT', () => void shutdown(0));

process.send?.({ type: 'ready', fastUrl: fast.url, modelUrl: model.url, fastKey: FAST_KEY, modelKey: MODEL_KEY, answer: FAST_ANSWER });
