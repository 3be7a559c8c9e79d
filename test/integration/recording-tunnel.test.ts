/**
 * Recording of tunnels on the real gateway: one session per tunnel, opened before the hello and sealed
 * when the tunnel closes (once, when the tunnel and the gateway end together); HTTP exchanges and TCP bytes
 * each way with their timing.
 */
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RecordedEvent } from '../../server/recording/event-types.js';
import { SEAL_LOG_FILE } from '../../server/recording/seal-log-format.js';
import { chatBody, gatewayFixture, httpOver, openClientMux, until } from '../helpers/gateway.js';
import { sessionEvents } from '../helpers/gateway-session-events.js';

const gateways = gatewayFixture();

describe('recording of tunnels', () => {
  it('records an HTTP tunnel as one session with its reason, sealed when the tunnel closes', async () => {
    const gw = await gateways.start();
    const token = await gw.token('alice');
    const tunnel = await openClientMux(`${gw.tunnelUrl('llm')}&reason=${encodeURIComponent('ticket 42')}`, token);
    const id = tunnel.helloMessage.session_id;
    const answer = await httpOver(() => tunnel.mux.openStream(), { method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: chatBody('hello there') });
    expect(answer.status).toBe(200);
    tunnel.mux.close(1000, 'done');
    await gw.stopApp();

    const { events, ok } = await sessionEvents(gw, id);
    expect(ok).toBe(true);
    expect(events[0]).toMatchObject({ type: 'session.start', fields: { session: id, via: 'tunnel', reason: 'ticket 42', user: { sub: 'alice' }, connection: { name: 'llm', type: 'http' } } });
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['exchange.request', 'exchange.response', 'exchange.end', 'session.end', 'session.checkpoint']));
    const end = events.find((e): e is RecordedEvent<'exchange.end'> => e.type === 'exchange.end')!;
    expect(end.fields).toMatchObject({ status: 200, complete: true, model: 'demo-echo' });
    expect((events.find((e) => e.type === 'session.end')!.fields as { reason: string }).reason).toMatch(/^tunnel closed \(1000/);
  });

  it('seals a tunnel still open at shutdown once: the shutdown and the tunnel\'s own end both close it, and the seal log holds one entry', async () => {
    const gw = await gateways.start();
    const tunnel = await openClientMux(gw.tunnelUrl('llm'), await gw.token('alice'));
    const id = tunnel.helloMessage.session_id;
    const answer = await httpOver(() => tunnel.mux.openStream(), { method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: chatBody('still open') });
    expect(answer.status).toBe(200);
    await gw.stopApp();

    const entries = (await readFile(join(gw.storageDir, SEAL_LOG_FILE), 'utf8'))
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; session?: string; status?: string });
    expect(entries.filter((e) => e.type === 'seal')).toEqual([expect.objectContaining({ session: id, status: 'closed' })]);
    const { events, ok } = await sessionEvents(gw, id);
    expect(ok).toBe(true);
    expect(events.filter((e) => e.type === 'session.end')).toHaveLength(1);
  });

  it('records TCP bytes each way with timing, the sizes only unless record.raw', async () => {
    const gw = await gateways.start();
    const tunnel = await openClientMux(gw.tunnelUrl('echo'), await gw.token('alice'));
    const id = tunnel.helloMessage.session_id;
    const stream = tunnel.mux.openStream();
    const received: Buffer[] = [];
    stream.on('data', (c: Buffer) => received.push(c));
    stream.write('PING 1\n');
    await until(() => Buffer.concat(received).length >= 7, 'the first echo');
    await new Promise((r) => setTimeout(r, 40));
    stream.end('PING 2\n');
    await once(stream, 'end');
    await new Promise((r) => setTimeout(r, 50));
    tunnel.mux.close(1000, 'done');
    await gw.stopApp();

    const { events, ok } = await sessionEvents(gw, id);
    expect(ok).toBe(true);
    const chunks = events.filter((e): e is RecordedEvent<'tcp.chunk'> => e.type === 'tcp.chunk');
    const up = chunks.filter((c) => c.fields.dir === 'up');
    const down = chunks.filter((c) => c.fields.dir === 'down');
    expect(up.reduce((n, c) => n + c.fields.bytes, 0)).toBe(14);
    expect(down.reduce((n, c) => n + c.fields.bytes, 0)).toBe(14);
    expect(chunks.every((c) => c.payload === undefined)).toBe(true);
    // The second ping went up at least 40 ms after the first.
    expect(up.at(-1)!.t - up[0]!.t).toBeGreaterThanOrEqual(40);
    const end = events.find((e): e is RecordedEvent<'exchange.end'> => e.type === 'exchange.end')!;
    expect(end.fields).toMatchObject({ bytes_up: 14, bytes_down: 14, complete: true });
  });
});
