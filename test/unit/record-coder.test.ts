/**
 * A writer's record coder deflates a large body on the event loop once its large bodies have been
 * compressing, and on libuv's threads otherwise. Where it runs must never change a byte: every record is
 * the one a fresh coder makes, and a session whose bodies change from text to random bytes and back
 * reads and verifies whole.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeRecordingIo } from '../../server/recording/file-io.js';
import { KeyRing } from '../../server/recording/key-ring.js';
import { codeEvents, RecordCoder } from '../../server/recording/record-events.js';
import type { RecordEvent } from '../../server/recording/record-format.js';
import { readSession } from '../../server/recording/session-reader.js';
import { SessionWriter } from '../../server/recording/session-writer.js';
import { loadOrCreateSigningKey, type SigningKey } from '../../server/recording/signing-key.js';
import { verifySession } from '../../server/recording/verify-session.js';
import { dirSource, memoryKeys } from '../helpers/stored-sessions.js';

const SESSION = 'ses_c0de0000000000000000000000000000';
const ring = new KeyRing([{ id: 'k1', key: randomBytes(32) }]);
let dir: string;
let signingKey: SigningKey;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-coder-'));
  signingKey = await loadOrCreateSigningKey(join(dir, 'signing.key'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** An answer's run of SSE text (compresses well) or of random bytes (does not), `kib` KiB long. */
function run(seq: number, kind: 'text' | 'random', kib: number): RecordEvent {
  const payload =
    kind === 'random'
      ? randomBytes(kib * 1024)
      : Buffer.from(Array.from({ length: kib * 8 }, (_, i) => `data: {"choices":[{"delta":{"content":"token ${seq}.${i} "}}]}\n\n`).join('').slice(0, kib * 1024));
  return { meta: { seq, t: seq, type: 'exchange.chunk', exchange: `req_${seq}`, dir: 'down', bytes: payload.length }, payload };
}

const SEQUENCE: ['text' | 'random', number][] = [
  ['text', 2],
  ['text', 40],
  ['text', 60],
  ['random', 60],
  ['random', 40],
  ['text', 60],
  ['text', 20],
  ['random', 200],
  ['text', 90],
];

describe('record coder', () => {
  it('codes every body to the bytes a fresh coder makes, wherever it deflates it', async () => {
    for (const compression of ['deflate', 'none'] as const) {
      const coder = new RecordCoder(compression);
      for (const [i, [kind, kib]] of SEQUENCE.entries()) {
        const events = [run(i, kind, kib)];
        const kept = Buffer.concat(await coder.code(events));
        const fresh = Buffer.concat(await codeEvents(events, compression));
        expect(kept.equals(fresh), `${compression} body ${i} (${kind}, ${kib} KiB)`).toBe(true);
      }
    }
  });

  it('writes a session whose bodies turn from text to random bytes and back, which reads and verifies whole', async () => {
    const path = join(dir, `${SESSION}.rec`);
    const writer = await SessionWriter.create({ io: nodeRecordingIo, path, sessionId: SESSION, created: Date.now(), keyRing: ring, fsync: 'never', fsyncIntervalMs: 1000 });
    const written: Buffer[] = [];
    for (const [i, [kind, kib]] of SEQUENCE.entries()) {
      const e = run(i, kind, kib);
      written.push(e.payload!);
      await writer.append('exchange.chunk', { exchange: `req_${i}`, dir: 'down', bytes: e.payload!.length }, e.payload);
    }
    await writer.seal(signingKey);
    const source = dirSource(dir, ring, memoryKeys([[SESSION, writer.wrappedKey]]));
    const read: Buffer[] = [];
    for await (const e of readSession(source, basename(path))) if (e.type === 'exchange.chunk') read.push(e.payload!);
    expect(read.map((b) => b.toString('base64'))).toEqual(written.map((b) => b.toString('base64')));
    const verdict = await verifySession(source, basename(path), { publicKey: signingKey.publicKey });
    expect(verdict.status).toBe('intact');
  });
});
