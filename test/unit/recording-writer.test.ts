import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { nodeRecordingIo, type RecordingIo } from '../../server/recording/file-io.js';
import { KeyRing } from '../../server/recording/key-ring.js';
import { readSession } from '../../server/recording/session-reader.js';
import { SessionWriter, type FsyncMode, type SessionWriterOptions } from '../../server/recording/session-writer.js';
import { loadOrCreateSigningKey, type SigningKey } from '../../server/recording/signing-key.js';
import { verifySession } from '../../server/recording/verify-session.js';
import { dirSource, memoryKeys } from '../helpers/stored-sessions.js';

const ring = new KeyRing([{ id: 'k1', key: randomBytes(32) }]);
let dir: string;
let signing: SigningKey;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-writer-'));
  signing = await loadOrCreateSigningKey(dir);
  return () => rm(dir, { recursive: true, force: true });
});

/** Node's fs, counting writes and syncs; `failNext` makes the next writev fail with that errno code. */
function countingIo() {
  const counts = { writev: 0, sync: 0, failNext: null as string | null };
  const io: RecordingIo = {
    ...nodeRecordingIo,
    create: async (path) => {
      const file = await nodeRecordingIo.create(path);
      return {
        ...file,
        writev: async (buffers) => {
          counts.writev++;
          if (counts.failNext !== null) {
            const code = counts.failNext;
            counts.failNext = null;
            throw Object.assign(new Error(code), { code });
          }
          return file.writev(buffers);
        },
        sync: async () => {
          counts.sync++;
          return file.sync();
        },
      };
    },
  };
  return { io, counts };
}

/** The writer's file verified as a reader sees it, with the data key the index would hold. */
function verifyWritten(w: SessionWriter) {
  return verifySession(dirSource(dir, ring, memoryKeys([[w.sessionId, w.wrappedKey]])), basename(w.path), { publicKey: signing.publicKey });
}

async function writer(fsync: FsyncMode, io: RecordingIo, more: Partial<SessionWriterOptions> = {}): Promise<SessionWriter> {
  return SessionWriter.create({ io, path: join(dir, `${fsync}-${randomBytes(4).toString('hex')}.rec`), sessionId: 'ses_w', created: Date.now(), keyRing: ring, fsync, fsyncIntervalMs: 20, ...more });
}

/** The writer's events as a reader sees them. */
async function readWritten(w: SessionWriter) {
  const events = [];
  for await (const e of readSession(dirSource(dir, ring, memoryKeys([[w.sessionId, w.wrappedKey]])), basename(w.path))) events.push(e);
  return events;
}

describe('session writer', () => {
  it('writes appends made in one tick with one writev, in one record, each event with its own seq, in order', async () => {
    const { io, counts } = countingIo();
    const w = await writer('never', io);
    const before = counts.writev;
    await Promise.all(Array.from({ length: 50 }, (_, i) => w.append('exchange.chunk', { exchange: 'x', dir: 'down', bytes: i })));
    expect(counts.writev - before).toBe(1);
    // One nonce, tag and chain hash for all of them.
    expect(w.records).toBe(1);
    expect(w.events).toBe(50);
    await w.seal(signing);
    expect(await verifyWritten(w)).toMatchObject({ ok: true, records: 2, lastGoodEvent: 50 });
    const events = await readWritten(w);
    expect(events.slice(0, 50).map((e) => [e.seq, e.record, (e.fields as { bytes: number }).bytes])).toEqual(Array.from({ length: 50 }, (_, i) => [i, 0, i]));
  });

  it('holds a deferred append for the next append, and writes both in one record', async () => {
    const { io, counts } = countingIo();
    const w = await writer('never', io, { holdMs: 60_000 });
    const before = counts.writev;
    let written = false;
    const head = w.defer('exchange.response', { exchange: 'x', status: 200, headers: {} }).then(() => (written = true));
    const run = w.defer('exchange.chunk', { exchange: 'x', dir: 'down', bytes: 5 }, Buffer.from('hello'));
    await new Promise((r) => setTimeout(r, 30));
    expect(written).toBe(false);
    expect(counts.writev - before).toBe(0);
    // What nothing deferred waits for: written() does not wait for the hold.
    await w.written();
    await w.append('exchange.end', { exchange: 'x', status: 200, complete: true, duration_ms: 1, bytes_up: 0, bytes_down: 5 });
    await Promise.all([head, run]);
    expect(counts.writev - before).toBe(1);
    expect(w.records).toBe(1);
    expect((await readWritten(w)).map((e) => [e.seq, e.record, e.type])).toEqual([
      [0, 0, 'exchange.response'],
      [1, 0, 'exchange.chunk'],
      [2, 0, 'exchange.end'],
    ]);
    await w.close();
  });

  it('writes deferred appends alone once they waited holdMs, or once they reach a record of bytes, and at close', async () => {
    const { io } = countingIo();
    const w = await writer('never', io, { holdMs: 20 });
    await w.defer('exchange.chunk', { exchange: 'x', dir: 'down', bytes: 1 }, Buffer.from('a'));
    expect(w.records).toBe(1);
    // 64 KiB of runs: written at once, with no append and before any timer.
    const slow = await writer('never', io, { holdMs: 60_000 });
    const big = Buffer.alloc(40 * 1024, 0x61);
    await Promise.all([slow.defer('exchange.chunk', { exchange: 'x', dir: 'down', bytes: big.length }, big), slow.defer('exchange.chunk', { exchange: 'x', dir: 'down', bytes: big.length }, big)]);
    expect(slow.events).toBe(2);
    const last = slow.defer('exchange.chunk', { exchange: 'x', dir: 'down', bytes: 1 }, Buffer.from('z'));
    await slow.close();
    await last;
    expect(slow.events).toBe(3);
    await w.close();
  });

  it('gives a deferred append its own holdMs when an earlier one left the hold before its time', async () => {
    const { io, counts } = countingIo();
    const w = await writer('never', io, { holdMs: 200 });
    // Time and timers are the test's; flushes (setImmediate) run as they do in the gateway.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    try {
      const turn = () => new Promise((r) => setImmediate(r));
      await Promise.all([
        w.defer('exchange.response', { exchange: 'a', status: 200, headers: {} }),
        w.append('exchange.end', { exchange: 'a', status: 200, complete: true, duration_ms: 1, bytes_up: 0, bytes_down: 0 }),
      ]);
      const before = counts.writev;
      await vi.advanceTimersByTimeAsync(120);
      let written = false;
      const late = w.defer('exchange.response', { exchange: 'b', status: 200, headers: {} }).then(() => (written = true));
      // Past the first append's 200 ms, short of this one's: still waiting for an append to share a record with.
      await vi.advanceTimersByTimeAsync(130);
      await turn();
      expect(written).toBe(false);
      expect(counts.writev).toBe(before);
      // Its own 200 ms are up: written alone.
      await vi.advanceTimersByTimeAsync(80);
      await turn();
      await late;
      expect(counts.writev).toBe(before + 1);
      expect((await readWritten(w)).map((e) => e.type)).toEqual(['exchange.response', 'exchange.end', 'exchange.response']);
    } finally {
      vi.useRealTimers();
    }
    await w.close();
  });

  it('tells written() about a failed write before the waiter resumes, so an exchange can refuse to write its end', async () => {
    const { io, counts } = countingIo();
    const w = await writer('never', io, { holdMs: 1 });
    counts.failNext = 'EIO';
    let failure: Error | undefined;
    w.defer('exchange.chunk', { exchange: 'x', dir: 'down', bytes: 1 }, Buffer.from('a')).catch((err: Error) => (failure = err));
    await new Promise((r) => setTimeout(r, 20));
    await w.written();
    expect(failure).toMatchObject({ code: 'ERR_RECORDING_UNAVAILABLE' });
    await w.close();
  });

  it('syncs after every write with fsync: always, on a timer with batch, and not before close with never', async () => {
    for (const [mode, expected] of [['always', 3], ['batch', 1], ['never', 0]] as const) {
      const { io, counts } = countingIo();
      const w = await writer(mode, io);
      const base = counts.sync;
      for (let i = 0; i < 3; i++) await w.append('exchange.chunk', { exchange: 'x', dir: 'down', bytes: i });
      await new Promise((r) => setTimeout(r, 60));
      expect(counts.sync - base, mode).toBe(expected);
      await w.close();
    }
  });

  it('rejects every append of a failed write with ERR_RECORDING_UNAVAILABLE, and continues the chain on the next success', async () => {
    const { io, counts } = countingIo();
    const w = await writer('never', io);
    await w.append('exchange.chunk', { exchange: 'x', dir: 'down', bytes: 1 });
    counts.failNext = 'EIO';
    const failed = await Promise.allSettled([w.append('exchange.chunk', { exchange: 'x', dir: 'down', bytes: 2 }), w.append('exchange.chunk', { exchange: 'x', dir: 'down', bytes: 3 })]);
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect((failed[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'ERR_RECORDING_UNAVAILABLE', message: expect.stringContaining('I/O error (EIO)') });
    expect(w.records).toBe(1);
    await w.append('exchange.chunk', { exchange: 'x', dir: 'down', bytes: 4 });
    await w.seal(signing);
    const verdict = await verifyWritten(w);
    expect(verdict).toMatchObject({ ok: true, records: 3 });
  });

  it('refuses appends after the session is sealed', async () => {
    const { io } = countingIo();
    const w = await writer('never', io);
    await w.seal(signing);
    await expect(w.append('exchange.chunk', { exchange: 'x', dir: 'down', bytes: 1 })).rejects.toMatchObject({ code: 'ERR_RECORDING_UNAVAILABLE' });
  });
});
