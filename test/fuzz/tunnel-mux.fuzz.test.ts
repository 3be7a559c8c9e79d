import fc from 'fast-check';
import { pipeline } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SluiceError } from '../../shared/errors.js';
import type { ControlMessage } from '../../shared/tunnel/control.js';
import { decodeFrame, encodeFrame, MAX_WINDOW, type Frame } from '../../shared/tunnel/frames.js';
import { TunnelMux } from '../../shared/tunnel/mux.js';
import type { TunnelStream } from '../../shared/tunnel/mux-stream.js';
import { rawFrame, u32 } from '../helpers/raw-frames.js';
import { fakeWebSocketPair } from './fake-websocket-pair.js';
import { fuzz, fuzzSettings } from './fuzz-settings.js';

// Small, so a few frames reach every limit.
const OPTIONS = { window: 1024, maxFrame: 256, maxStreams: 4, maxMetadata: 128 };
const LIMITS = { maxFrame: OPTIONS.maxFrame, maxMetadata: OPTIONS.maxMetadata };
// Each case wires two muxes and turns the event loop a few dozen times: fewer cases than the cheap targets.
const RUNS = 1000;

/** What the fuzzer does: inject a frame (as the client), turn the event loop, or write to the healthy stream. */
type Action = { kind: 'inject'; bytes: Buffer } | { kind: 'tick' } | { kind: 'write'; bytes: Buffer };

// Never 1, the healthy stream's id, but in an OPEN (which must fail the tunnel).
const fuzzId = fc.oneof(fc.integer({ min: 2, max: 8 }), fc.integer({ min: 9, max: 0xffff_ffff }));

/** Random bytes, less the few that are a well-formed frame for the healthy stream. */
function notForHealthy(bytes: Buffer): boolean {
  try {
    const frame = decodeFrame(bytes, LIMITS);
    return frame.streamId !== 1 || frame.type === 'open';
  } catch {
    return true;
  }
}


const injected: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.integer({ min: 2, max: 8 }), fc.constantFrom('hold', 'sink')).map(([id, mode]) => encodeFrame({ type: 'open', streamId: id, meta: { mode } })) },
  { weight: 1, arbitrary: fc.oneof(fuzzId, fc.constant(1)).map((id) => encodeFrame({ type: 'open', streamId: id, meta: { mode: 'hold' } })) },
  { weight: 4, arbitrary: fc.tuple(fuzzId, fc.integer({ min: 1, max: 600 })).map(([id, n]) => rawFrame(2, id, Buffer.alloc(n, 0x78))) },
  { weight: 1, arbitrary: fuzzId.map((id) => rawFrame(3, id)) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fuzzId, fc.oneof(fc.integer({ min: 1, max: 4096 }), fc.integer({ min: MAX_WINDOW - 4096, max: MAX_WINDOW }), fc.integer({ min: 0, max: 0xffff_ffff })))
      .map(([id, inc]) => rawFrame(5, id, u32(inc))),
  },
  { weight: 1, arbitrary: fc.tuple(fuzzId, fc.integer({ min: 0, max: 0xffff }), fc.constantFrom('', 'ERR_TUNNEL_LIMIT', 'ECONNRESET')).map(([id, code, reason]) => encodeFrame({ type: 'reset', streamId: id, code, reason })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a)).filter(notForHealthy) },
);

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 5, arbitrary: injected.map((bytes) => ({ kind: 'inject' as const, bytes })) },
  { weight: 2, arbitrary: fc.constant({ kind: 'tick' as const }) },
  { weight: 2, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 700 }).map((a) => ({ kind: 'write' as const, bytes: Buffer.from(a) })) },
);

/**
 * What the server mux must make of the injected frames, from the rules in mux.ts and mux-stream.ts: the
 * credit each made-up stream holds follows the WINDOW frames the server actually sent (diverted to us).
 */
class Model {
  highestId = 1; // the healthy stream
  readonly live = new Map<number, { credit: number; sendCredit: number; ended: boolean }>();
  readonly refused = new Set<number>();
  failed = false;

  /** Applies a WINDOW the server sent for a made-up stream. */
  granted(frame: Frame): void {
    const s = this.live.get(frame.streamId);
    if (s && frame.type === 'window') s.credit += frame.increment;
  }

  /** True when the server must fail the tunnel on these bytes. */
  receive(bytes: Buffer): boolean {
    let frame: Frame;
    try {
      frame = decodeFrame(bytes, LIMITS);
    } catch {
      return (this.failed = true);
    }
    if (frame.type === 'open') {
      if (frame.streamId <= this.highestId) return (this.failed = true);
      this.highestId = frame.streamId;
      if (this.live.size + 1 >= OPTIONS.maxStreams) this.refused.add(frame.streamId);
      else this.live.set(frame.streamId, { credit: OPTIONS.window, sendCredit: OPTIONS.window, ended: false });
      return false;
    }
    const s = this.live.get(frame.streamId);
    if (s === undefined) return (this.failed = frame.streamId > this.highestId);
    switch (frame.type) {
      case 'data':
        if (s.ended || frame.data.length > s.credit) return (this.failed = true);
        s.credit -= frame.data.length;
        return false;
      case 'end':
        if (s.ended) return (this.failed = true);
        s.ended = true;
        return false;
      case 'window':
        if (s.sendCredit + frame.increment > MAX_WINDOW) return (this.failed = true);
        s.sendCredit += frame.increment;
        return false;
      case 'reset':
        this.live.delete(frame.streamId);
        return false;
    }
  }
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

async function runCase(actions: Action[]): Promise<void> {
  const { client, server, asWs } = fakeWebSocketPair();
  const serverMux = new TunnelMux(asWs(server), { role: 'server', ...OPTIONS });
  const clientMux = new TunnelMux(asWs(client), { role: 'client', ...OPTIONS });
  const serverErrors: Error[] = [];
  serverMux.on('error', (err) => serverErrors.push(err));
  clientMux.on('error', () => undefined);
  const clientControl: ControlMessage[] = [];
  clientMux.on('control', (m) => clientControl.push(m));

  const model = new Model();
  const toFuzzer: Frame[] = [];
  // Frames of made-up streams come back to the fuzzer; the healthy stream's go to the client mux.
  server.divert = (bytes) => {
    if (bytes.readUInt32BE(1) === 1) return false;
    const frame = decodeFrame(bytes, LIMITS);
    toFuzzer.push(frame);
    model.granted(frame);
    return true;
  };
  const fuzzed: TunnelStream[] = [];
  serverMux.on('stream', (stream, meta) => {
    stream.on('error', () => undefined);
    if (stream.id === 1) pipeline(stream, stream, () => undefined);
    else {
      fuzzed.push(stream);
      if (meta.mode === 'sink') stream.resume();
    }
  });

  const healthy = clientMux.openStream({ mode: 'echo' });
  const received: Buffer[] = [];
  let healthyError: unknown;
  healthy.on('data', (c: Buffer) => received.push(c));
  healthy.on('error', (err) => (healthyError = err));
  const healthyEnded = new Promise<void>((resolve) => {
    healthy.once('end', resolve);
    healthy.once('close', resolve);
  });
  while (serverMux.stats.streamsOpen === 0) await tick();

  const sent: Buffer[] = [];
  for (const a of actions) {
    if (model.failed) break;
    if (a.kind === 'tick') await tick();
    else if (a.kind === 'write') {
      sent.push(a.bytes);
      healthy.write(a.bytes);
    } else {
      model.receive(a.bytes);
      server.inject(a.bytes, true);
      expect(serverMux.isClosed, `after ${a.bytes.toString('hex').slice(0, 40)}`).toBe(model.failed);
    }
    // Memory stays bounded: a made-up stream nobody reads holds at most one window.
    for (const s of fuzzed) expect(s.readableLength).toBeLessThanOrEqual(OPTIONS.window);
  }

  if (model.failed) {
    await healthyEnded;
    while (server.closed === undefined || client.closed === undefined) await tick();
    expect(serverErrors).toHaveLength(1);
    expect(serverErrors[0]).toBeInstanceOf(SluiceError);
    expect((serverErrors[0] as SluiceError).code).toBe('ERR_TUNNEL_PROTOCOL');
    expect(server.closed).toEqual({ code: 4400, reason: 'ERR_TUNNEL_PROTOCOL' });
    expect(client.closed).toEqual({ code: 4400, reason: 'ERR_TUNNEL_PROTOCOL' });
    expect(clientControl.at(-1)).toMatchObject({ type: 'error', code: 'ERR_TUNNEL_PROTOCOL' });
    expect(healthyError).toMatchObject({ code: 'ECONNRESET', closeCode: 4400 });
    return;
  }
  healthy.end();
  await healthyEnded;
  expect(healthyError).toBeUndefined();
  expect(Buffer.concat(received).equals(Buffer.concat(sent))).toBe(true);
  expect(serverErrors).toEqual([]);
  // Every OPEN past maxStreams was refused with RESET 4429 ERR_TUNNEL_LIMIT, the tunnel left up.
  for (const id of model.refused) expect(toFuzzer).toContainEqual({ type: 'reset', streamId: id, code: 4429, reason: 'ERR_TUNNEL_LIMIT' });
  expect(serverMux.stats.streamsOpen).toBe(model.live.size);
  clientMux.close();
  await tick();
  await tick();
}

describe('tunnel multiplexer (fuzz)', () => {
  it('fails the tunnel with ERR_TUNNEL_PROTOCOL exactly when injected frames break the protocol, stays bounded, and keeps a healthy stream exact otherwise', { timeout: fuzzSettings(RUNS).timeoutMs }, async () => {
    await fuzz('tunnel-mux: injected frames', fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 40 }), runCase), RUNS);
  });
});
