import { createServer, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { connectionSchema, type HttpConnectionConfig } from '../../server/config/schema.js';
import type { Exchange } from '../../server/pipeline/exchange.js';
import { createHttpUpstream } from '../../server/pipeline/http-upstream.js';
import type { ResponseFrames } from '../../server/pipeline/response-frames.js';
import { createUpstreamPools } from '../../server/pipeline/upstream-pools.js';
import { listenOnLoopback } from '../helpers/loopback.js';

const HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n';
const chunk = (text: string) => `${text.length.toString(16)}\r\n${text}\r\n`;

/**
 * An upstream that answers the requests of one keep-alive socket in turn, each answer a list of writes
 * made `gapMs` apart (so each is a socket read of its own); `written` resolves once a request's last write is out.
 */
async function startRawUpstream(answers: Record<string, readonly string[]>, gapMs: number): Promise<{ url: string; written: Map<string, Promise<void>> }> {
  const written = new Map<string, { promise: Promise<void>; resolve: () => void }>();
  for (const path of Object.keys(answers)) {
    let resolve!: () => void;
    written.set(path, { promise: new Promise<void>((r) => (resolve = r)), resolve });
  }
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    let pending = '';
    socket.on('data', async (data) => {
      pending += data.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
        const path = pending.slice(0, end).split(' ')[1]!;
        pending = pending.slice(end + 4);
        for (const write of answers[path] ?? []) {
          socket.write(write);
          await sleep(gapMs);
        }
        written.get(path)?.resolve();
      }
    });
  });
  const port = await listenOnLoopback(server);
  onTestFinished(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${port}`, written: new Map([...written].map(([path, w]) => [path, w.promise])) };
}

/** Response frames of a caller that is full from its first chunk on, until the test calls `resume`. */
function fullCaller() {
  const got: string[] = [];
  let resume: () => void = () => {};
  let ended!: () => void;
  const end = new Promise<void>((resolve) => (ended = resolve));
  const frames: ResponseFrames = {
    head: () => {},
    data: (data) => {
      got.push(data.toString('latin1'));
      return false;
    },
    end: () => ended(),
    resumeWith: (r) => (resume = r),
  };
  return { frames, got, end, resume: () => resume() };
}

function exchangeTo(connection: HttpConnectionConfig, path: string): Exchange {
  return { id: `req_${path.slice(1)}`, connection, path, method: 'GET', headers: {}, clientAddress: '127.0.0.1' } as unknown as Exchange;
}

describe('HTTP upstream backpressure', () => {
  it('a resume that comes after its response ended does not resume the next request on the same socket', async () => {
    const upstream = await startRawUpstream(
      {
        // The caller is full after "first"; the end arrives in a read of its own, after the pause.
        '/one': [HEAD + chunk('first'), '0\r\n\r\n'],
        '/two': [HEAD + chunk('a'), chunk('b'), chunk('c'), '0\r\n\r\n'],
      },
      40,
    );
    const connection = connectionSchema.parse({ name: 'model', type: 'http', upstream: upstream.url, allow_groups: ['ml-eng'] }) as HttpConnectionConfig;
    // One socket: the second request is carried by the socket the first one used.
    const pools = createUpstreamPools({ maxConnectionsPerUpstream: 1 });
    const httpUpstream = createHttpUpstream({ pools, ownsPools: true });
    onTestFinished(() => httpUpstream.close());
    const fail = vi.fn();
    const call = (path: string, caller: ReturnType<typeof fullCaller>) =>
      httpUpstream.call({ exchange: exchangeTo(connection, path), body: null, secure: false, frames: caller.frames, requestEnded: () => {}, fail });

    const one = fullCaller();
    call('/one', one);
    await one.end;
    expect(one.got).toEqual(['first']);

    const two = fullCaller();
    call('/two', two);
    await upstream.written.get('/two');
    await sleep(50);
    // Paused after "a": "b" was on its way in the next read, "c" waits in the socket.
    expect(two.got).toEqual(['a', 'b']);

    // The first caller drains long after its answer ended: nothing of the second answer moves.
    one.resume();
    await sleep(50);
    expect(two.got).toEqual(['a', 'b']);

    two.resume();
    await two.end;
    expect(two.got.join('')).toBe('abc');
    expect(fail).not.toHaveBeenCalled();
  });
});
