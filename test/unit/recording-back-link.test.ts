import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeRecordingIo } from '../../server/recording/file-io.js';
import { KeyRing } from '../../server/recording/key-ring.js';
import { decodeRecord, encodeRecord } from '../../server/recording/record-events.js';
import { decodeHeader, HEADER_PREFIX, headerLength, LENGTH_BYTES, sessionAad } from '../../server/recording/record-format.js';
import { sessionDataKey } from '../../server/recording/session-source.js';
import { SessionWriter } from '../../server/recording/session-writer.js';
import { loadOrCreateSigningKey, type SigningKey } from '../../server/recording/signing-key.js';
import { verifySession } from '../../server/recording/verify-session.js';
import { dirSource, memoryKeys } from '../helpers/stored-sessions.js';

const SESSION = 'ses_00000000000000000000000000b1ac0e';
const ring = new KeyRing([{ id: 'k1', key: randomBytes(32) }]);
let dir: string;
let signing: SigningKey;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-back-link-'));
  signing = await loadOrCreateSigningKey(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('a record with the right sequence number but a wrong back-link', () => {
  it('fails verification with a chain problem at that record, first', async () => {
    const path = join(dir, `${SESSION}.rec`);
    const writer = await SessionWriter.create({ io: nodeRecordingIo, path, sessionId: SESSION, created: Date.now(), keyRing: ring, fsync: 'never', fsyncIntervalMs: 1000 });
    for (let i = 0; i < 5; i++) await writer.append('exchange.chunk', { exchange: 'req_1', dir: 'down', bytes: 6 }, Buffer.from(`chunk${i}`), i);
    const keys = memoryKeys([[writer.sessionId, writer.wrappedKey]]);
    await writer.seal(signing);
    const source = dirSource(dir, ring, keys);

    // Record 3 re-encrypted with the session's own key: same seq, type and payload; only `prev` differs.
    const bytes = await readFile(path);
    const headerEnd = headerLength(bytes.subarray(0, HEADER_PREFIX));
    const header = decodeHeader(bytes.subarray(0, headerEnd));
    const dataKey = await sessionDataKey(header, source);
    const offsets: number[] = [];
    for (let at = headerEnd; at < bytes.length; at += LENGTH_BYTES + bytes.readUInt32BE(at)) offsets.push(at);
    const original = decodeRecord(bytes.subarray(offsets[3], offsets[4]), dataKey, sessionAad(SESSION), header);
    expect(original.events.map((e) => e.meta.seq)).toEqual([3]);
    const forged = await encodeRecord({ dataKey, sessionAad: sessionAad(SESSION), prev: randomBytes(32), events: original.events, compression: header.compression });
    await writeFile(path, Buffer.concat([bytes.subarray(0, offsets[3]), forged, bytes.subarray(offsets[4])]));

    const result = await verifySession(source, basename(path), { publicKey: signing.publicKey });
    expect(result.ok).toBe(false);
    expect(result.status).toBe('broken');
    expect(result.problems[0]).toMatchObject({ kind: 'chain', index: 3, offset: offsets[3] });
    expect(result.problems.some((p) => p.kind === 'sequence' || p.kind === 'decrypt')).toBe(false);
    expect(result.lastGoodSeq).toBe(2);
  });
});
