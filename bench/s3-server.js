// Child process: the S3-protocol server the recording bench ships sessions to. It is s3rver, the server the
// tests use (test/helpers/s3-server.ts wires it into vitest, hence the direct import here), serving a
// throwaway directory on 127.0.0.1, port 0, with the buckets named in BENCH_S3_BUCKETS already made.
//
// It times the bucket's side of every upload: for each PUT, when its head arrived and when the answer was
// sent, and the body bytes. The parent asks over IPC ({type: 'puts'}, reply {type: 'puts', first_request_at,
// puts}); {type: 'reset'} forgets what was seen. Times are ms on this process's monotonic clock, so only
// differences between them mean anything.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { serveFromParent } from './procs.js';

const S3rver = createRequire(import.meta.url)('s3rver');
const buckets = (process.env.BENCH_S3_BUCKETS ?? 'bench').split(',').filter(Boolean);

let firstRequestAt;
let puts = [];

process.on('message', (msg) => {
  if (msg?.type === 'reset') {
    firstRequestAt = undefined;
    puts = [];
    process.send?.({ type: 'reset' });
  }
  if (msg?.type === 'puts') process.send?.({ type: 'puts', first_request_at: firstRequestAt, puts });
});

await serveFromParent(async () => {
  const directory = mkdtempSync(join(tmpdir(), 'sluice-bench-s3-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: buckets.map((name) => ({ name })) });
  const address = await server.run();
  server.httpServer.on('request', (req, res) => {
    const at = performance.now();
    firstRequestAt ??= at;
    if (req.method !== 'PUT') return;
    // From the headers: reading the body here would take it from s3rver. The SDK may send aws-chunked bodies.
    const bytes = Number(req.headers['x-amz-decoded-content-length'] ?? req.headers['content-length'] ?? 0);
    res.on('finish', () => puts.push({ key: req.url.split('?')[0], status: res.statusCode, bytes, start: at, end: performance.now() }));
  });
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: async () => {
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
});
