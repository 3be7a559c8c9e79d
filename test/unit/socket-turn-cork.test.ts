import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import { describe, expect, it, onTestFinished } from 'vitest';
import { corkEachTurn } from '../../cli/tunnel/socket-turn-cork.js';

/** A connected loopback pair: what the local client reads, and the socket the CLI writes to. */
async function socketPair(): Promise<{ client: Socket; local: Socket }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  const [local] = await accepted;
  onTestFinished(() => {
    client.destroy();
    local.destroy();
    server.close();
  });
  return { client, local };
}

describe('corkEachTurn', () => {
  it('holds the writes of one turn on the socket and lets them go together once the turn is over, in order', async () => {
    const { client, local } = await socketPair();
    const source = new PassThrough();
    corkEachTurn(source, local);
    source.pipe(local);
    const corkedAtWrite: number[] = [];
    const write = local.write.bind(local);
    local.write = ((...args: Parameters<Socket['write']>) => {
      corkedAtWrite.push(local.writableCorked);
      return write(...args);
    }) as Socket['write'];
    const received: Buffer[] = [];
    client.on('data', (c: Buffer) => received.push(c));

    // Several DATA frames of one tunnel read, delivered in one turn.
    source.write('HTTP/1.1 200 OK\r\n');
    source.write('content-length: 5\r\n\r\n');
    source.write('hello');
    await new Promise((resolve) => setImmediate(resolve));

    expect(corkedAtWrite).toEqual([1, 1, 1]);
    expect(local.writableCorked).toBe(0);
    const expected = 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello';
    while (Buffer.concat(received).length < expected.length) await once(client, 'data');
    expect(Buffer.concat(received).toString()).toBe(expected);
  });

  it("hands a stream's sink the pieces of one turn as one write (a request's head and body: one DATA frame)", async () => {
    const source = new PassThrough();
    const writes: number[] = [];
    const sink = new Writable({
      write(_chunk, _encoding, callback) {
        writes.push(1);
        callback();
      },
      writev(chunks, callback) {
        writes.push(chunks.length);
        callback();
      },
    });
    corkEachTurn(source, sink);
    source.pipe(sink);

    source.write('POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 2\r\n\r\n');
    source.write('{}');
    await new Promise((resolve) => setImmediate(resolve));
    source.write('next turn');
    await new Promise((resolve) => setImmediate(resolve));

    expect(writes).toEqual([2, 1]);
  });
});
