/**
 * The network between `sluice connect` (the real binary) and the gateway drops mid-session: a TCP relay
 * in front of the gateway cuts every connection it carries while a streamed answer is under way, and
 * keeps accepting new ones. The caller of the cut stream gets a broken answer, never a complete one; the
 * CLI keeps its local port, reconnects, and the next call succeeds; the upstream saw each call once.
 */
import { once } from 'node:events';
import { connect as netConnect, createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { sessionDetailSchema, type ExchangeSummaryJson } from '../../shared/sessions-api.js';
import { spawnConnect } from '../helpers/cli-connect.js';
import { gatewayFixture } from '../helpers/gateway.js';
import { tempDir } from '../helpers/temp-dir.js';

const gateways = gatewayFixture();

interface Cutter {
  readonly url: string;
  /** Connections relayed so far. */
  readonly accepted: number;
  /** Destroys every relayed connection, both sides, as a dropped network would; new ones are still accepted. */
  cut(): void;
  close(): Promise<void>;
}

/** A byte relay on 127.0.0.1:0 to `port`, with a switch that cuts what it carries. */
async function startCutter(port: number): Promise<Cutter> {
  const live = new Set<Socket>();
  let accepted = 0;
  const server = createServer((client) => {
    accepted += 1;
    const upstream = netConnect({ host: '127.0.0.1', port });
    for (const s of [client, upstream]) {
      live.add(s);
      s.on('close', () => live.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get accepted() {
      return accepted;
    },
    cut: () => {
      for (const s of live) s.destroy();
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of live) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** One HTTP/1.1 request on a new connection to the local port; resolves with all it read and how it ended. */
function rawCall(port: number, head: string, body: string, onData?: (text: string) => void): Promise<{ text: string; ended: 'end' | 'error' }> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    let text = '';
    socket.on('connect', () => socket.write(`${head}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`));
    socket.on('data', (c: Buffer) => {
      text += c.toString('utf8');
      onData?.(text);
    });
    socket.on('end', () => resolve({ text, ended: 'end' }));
    socket.on('error', () => resolve({ text, ended: 'error' }));
  });
}

describe('network drop between sluice connect and the gateway', () => {
  it('the cut stream ends broken, the local port stays open, the CLI reconnects, the next call succeeds, and nothing is forwarded twice', { timeout: 60_000 }, async () => {
    // A slow stream (40 × 50 ms) so the cut lands in the middle of it.
    const gw = await gateways.start({ model: { chunks: 40, chunkDelayMs: 50 } });
    const cutter = await startCutter(gw.port);
    onTestFinished(() => cutter.close());
    const home = await tempDir('sluice-drop-');
    const { cli, ready, localPort } = await spawnConnect(['llm', '--port', '0'], {
      env: { SLUICE_TOKEN: await gw.token('alice'), SLUICE_GATEWAY: cutter.url, XDG_CONFIG_HOME: home, SLUICE_TOKEN_STORE: 'file' },
    });
    const head = (path: string): string =>
      `POST ${path} HTTP/1.1\r\nHost: llm\r\nAuthorization: Bearer ${ready.local_token}\r\nContent-Type: application/json\r\n`;
    const chat = (content: string, stream: boolean): string => JSON.stringify({ model: 'demo-echo', stream, messages: [{ role: 'user', content }] });

    // A streamed answer, cut once its first events arrived.
    let cutDone = false;
    const cutCall = await rawCall(localPort, head('/v1/chat/completions'), chat('before the drop', true), (text) => {
      if (!cutDone && (text.match(/^data: /gm) ?? []).length >= 3) {
        cutDone = true;
        cutter.cut();
      }
    });
    expect(cutDone).toBe(true);
    expect(cutCall.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(cutCall.text).not.toContain('data: [DONE]');

    await cli.waitForOutput(/"event":"disconnected"/);
    await cli.waitForOutput(/"event":"connected"[^\n]*"reconnect":true/, 20_000);

    const after = await rawCall(localPort, head('/v1/chat/completions'), chat('after the drop', false));
    expect(after.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(after.text).toContain('You said: \\"after the drop\\"');
    // Each call reached the model once: the cut one was not re-sent by the reconnect.
    const chats = gw.model.requests.filter((r) => r.path === '/v1/chat/completions').map((r) => (JSON.parse(r.body) as { messages: { content: string }[] }).messages[0]!.content);
    expect(chats).toEqual(['before the drop', 'after the drop']);
    // The tunnel came back over a new connection through the relay.
    expect(cutter.accepted).toBeGreaterThanOrEqual(2);
    cli.kill('SIGTERM');
    expect(await cli.exited).toBe(0);

    // The recording: the cut exchange ended incomplete, the one after the reconnect complete.
    const carol = await gw.token('carol');
    let exchanges: ExchangeSummaryJson[] = [];
    await vi.waitFor(
      async () => {
        exchanges = [];
        for (const s of (await gw.sessions()).filter((x) => x.connection === 'llm')) {
          const res = await fetch(`${gw.url}/v1/sessions/${s.id}`, { headers: { authorization: `Bearer ${carol}` } });
          exchanges.push(...(sessionDetailSchema.parse(await res.json()).exchanges ?? []));
        }
        expect(exchanges.filter((x) => x.path === '/v1/chat/completions' && x.complete !== null)).toHaveLength(2);
      },
      { timeout: 15_000, interval: 200 },
    );
    const chatsRecorded = exchanges.filter((x) => x.path === '/v1/chat/completions');
    const cutX = chatsRecorded.find((x) => x.streamed);
    const afterX = chatsRecorded.find((x) => !x.streamed);
    // To the gateway a dropped tunnel is a caller that left: the exchange is incomplete, with no upstream
    // error to name, and it holds only what was relayed before the cut.
    expect(cutX).toMatchObject({ status: 200, streamed: true, complete: false, error: null });
    expect(cutX!.bytes_down).toBeGreaterThan(0);
    expect(afterX).toMatchObject({ status: 200, complete: true, error: null });
  });
});
