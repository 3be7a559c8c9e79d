import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { nodeRecordingIo, type RecordingIo } from '../../server/recording/file-io.js';
import { KeyRing } from '../../server/recording/key-ring.js';
import { SessionWriter, type FsyncMode } from '../../server/recording/session-writer.js';
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

async function writer(fsync: FsyncMode, io: RecordingIo): Promise<SessionWriter> {
  return SessionWriter.create({ io, path: join(dir, `${fsync}-${randomBytes(4).toString('hex')}.rec`), sessionId: 'ses_w', created: Date.now(), keyRing: ring, fsync, fsyncIntervalMs: 20 });
}

describe('session writer', () => {
  it('writes appends made in one tick with one writev, in order', async () => {
    const { io, counts } = countingIo();
    const w = await writer('never', io);
    const before = counts.writev;
    await Promise.all(Array.from({ length: 50 }, (_, i) => w.append('exchange.chunk', { exchange: 'x', dir: 'down', bytes: i })));
    expect(counts.writev - before).toBe(1);
    expect(w.records).toBe(50);
    await w.seal(signing);
    expect((await verifyWritten(w)).ok).toBe(true);
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
