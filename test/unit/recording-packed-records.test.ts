/**
 * Format 3: the events appended together share one encrypted record (one nonce, tag and chain hash), coded
 * stored or compressed. Every event keeps its own `seq`, and whatever is done to one event inside a shared
 * record — altered, removed, reordered, cut — is found, with the record it is in.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { nodeRecordingIo } from '../../server/recording/file-io.js';
import { KeyRing } from '../../server/recording/key-ring.js';
import { decodeRecord, encodeRecord } from '../../server/recording/record-events.js';
import {
  checkpointMessage,
  decodeHeader,
  encodeHeader,
  HASH_BYTES,
  headerLength,
  HEADER_PREFIX,
  LENGTH_BYTES,
  openRecord,
  sessionAad,
  sha256,
  type RecordCompression,
  type RecordEvent,
  type SessionHeader,
} from '../../server/recording/record-format.js';
import { readSession } from '../../server/recording/session-reader.js';
import type { SessionKeyLookup } from '../../server/recording/session-source.js';
import { sessionDataKey } from '../../server/recording/session-source.js';
import { SessionWriter } from '../../server/recording/session-writer.js';
import { loadOrCreateSigningKey, signCheckpoint, type SigningKey } from '../../server/recording/signing-key.js';
import { verifySession } from '../../server/recording/verify-session.js';
import { dirSource, memoryKeys } from '../helpers/stored-sessions.js';

const SESSION = 'ses_0123456789abcdef0123456789abcdef';
const ANSWER = '{"choices":[{"message":{"role":"assistant","content":"the vault opens at dawn"}}]}';

let dir: string;
let signing: SigningKey;
const ring = new KeyRing([{ id: 'k1', key: randomBytes(32) }]);
const keysByFile = new Map<string, SessionKeyLookup>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-packed-'));
  signing = await loadOrCreateSigningKey(dir);
  return () => rm(dir, { recursive: true, force: true });
});

/**
 * A sealed session of four records: the start; a request; its answer in one record (head, two runs, end);
 * the checkpoint. Each append group is awaited, so the records are exactly these.
 */
async function writeAnswer(options: { compression?: RecordCompression; seal?: boolean } = {}): Promise<{ path: string; writer: SessionWriter }> {
  const path = join(dir, `${SESSION}-${randomBytes(4).toString('hex')}.rec`);
  const writer = await SessionWriter.create({
    io: nodeRecordingIo,
    path,
    sessionId: SESSION,
    created: Date.now(),
    keyRing: ring,
    fsync: 'never',
    fsyncIntervalMs: 1000,
    ...(options.compression === undefined ? {} : { compression: options.compression }),
  });
  keysByFile.set(path, memoryKeys([[writer.sessionId, writer.wrappedKey]]));
  await writer.append('session.start', {
    session: SESSION,
    started_at: writer.created,
    user: { sub: 'alice', groups: ['ml-eng'], issuer: 'https://idp' },
    connection: { name: 'llm', type: 'http' },
    via: 'proxy',
    client_address: '127.0.0.1',
    record: { request_body: 'raw', response_body: 'raw', raw: false },
  });
  await writer.append('exchange.request', { exchange: 'req_1', method: 'POST', path: '/v1/chat/completions', headers: {}, decision: { action: 'allow' }, body: { capture: 'raw', bytes: 9 } }, Buffer.from('the prompt'), 1);
  await Promise.all([
    writer.defer('exchange.response', { exchange: 'req_1', status: 200, headers: { 'content-type': 'application/json' } }, undefined, 5),
    writer.defer('exchange.chunk', { exchange: 'req_1', dir: 'down', bytes: 40 }, Buffer.from(ANSWER.slice(0, 40)), 6),
    writer.defer('exchange.chunk', { exchange: 'req_1', dir: 'down', bytes: ANSWER.length - 40 }, Buffer.from(ANSWER.slice(40)), 7),
    writer.append('exchange.end', { exchange: 'req_1', status: 200, complete: true, duration_ms: 8, bytes_up: 10, bytes_down: ANSWER.length }, undefined, 8),
  ]);
  if (options.seal ?? true) await writer.seal(signing);
  else await writer.close();
  return { path, writer };
}

function source(path: string) {
  return dirSource(dir, ring, keysByFile.get(path));
}

async function readAll(path: string) {
  const events = [];
  for await (const e of readSession(source(path), basename(path))) events.push(e);
  return events;
}

function verify(path: string, expect?: { records?: number }) {
  return verifySession(source(path), basename(path), { publicKey: signing.publicKey, ...(expect === undefined ? {} : { expect }) });
}

/** The file's header, data key and records (offset and bytes), as someone holding the session's data key sees them. */
async function opened(path: string): Promise<{ bytes: Buffer; header: SessionHeader; dataKey: Buffer; records: { offset: number; frame: Buffer }[] }> {
  const bytes = await readFile(path);
  const headerEnd = headerLength(bytes.subarray(0, HEADER_PREFIX));
  const header = decodeHeader(bytes.subarray(0, headerEnd));
  const dataKey = await sessionDataKey(header, source(path));
  const records = [];
  for (let at = headerEnd; at < bytes.length; at += LENGTH_BYTES + bytes.readUInt32BE(at)) records.push({ offset: at, frame: bytes.subarray(at, at + LENGTH_BYTES + bytes.readUInt32BE(at)) });
  return { bytes, header, dataKey, records };
}

/** The file with record `index` replaced by the same record's events as `edit` leaves them, re-encrypted with the session's own key and `prev`. */
async function reEncrypted(path: string, index: number, edit: (events: RecordEvent[]) => RecordEvent[]): Promise<{ offsets: number[] }> {
  const { bytes, header, dataKey, records } = await opened(path);
  const target = records[index]!;
  const decoded = decodeRecord(target.frame, dataKey, sessionAad(SESSION), header);
  const forged = await encodeRecord({ dataKey, sessionAad: sessionAad(SESSION), prev: decoded.prev, events: edit([...decoded.events]), compression: header.compression });
  await writeFile(path, Buffer.concat([bytes.subarray(0, target.offset), forged, bytes.subarray(target.offset + target.frame.length)]));
  return { offsets: records.map((r) => r.offset) };
}

describe('format 3: the events appended together share one record', () => {
  it('reads every event of a shared record with its own seq, time and payload, and counts records apart from events', async () => {
    const { path, writer } = await writeAnswer();
    expect(writer.records).toBe(4);
    expect(writer.events).toBe(7);
    const events = await readAll(path);
    expect(events.map((e) => [e.seq, e.record, e.t, e.type])).toEqual([
      [0, 0, expect.any(Number), 'session.start'],
      [1, 1, 1, 'exchange.request'],
      [2, 2, 5, 'exchange.response'],
      [3, 2, 6, 'exchange.chunk'],
      [4, 2, 7, 'exchange.chunk'],
      [5, 2, 8, 'exchange.end'],
      [6, 3, expect.any(Number), 'session.checkpoint'],
    ]);
    expect(new Set(events.slice(2, 6).map((e) => e.offset)).size).toBe(1);
    expect(Buffer.concat([events[3]!.payload!, events[4]!.payload!]).toString()).toBe(ANSWER);
    // The checkpoint signs the records before it, not the events.
    expect(events[6]!.fields).toMatchObject({ records: 3 });
    expect(await verify(path, { records: 4 })).toMatchObject({ ok: true, status: 'intact', records: 4, lastGoodSeq: 3, lastGoodEvent: 6, problems: [] });
    const bytes = await readFile(path);
    expect(bytes.includes(Buffer.from('vault'))).toBe(false);
    expect(bytes.includes(Buffer.from('the prompt'))).toBe(false);
  });

  it('finds a flipped byte in a shared record at that record, and reads nothing of it', async () => {
    const { path } = await writeAnswer();
    const { records } = await opened(path);
    const bytes = await readFile(path);
    bytes[records[2]!.offset + 30]! ^= 0x01;
    await writeFile(path, bytes);
    const result = await verify(path);
    expect(result).toMatchObject({ status: 'broken', lastGoodSeq: 1, lastGoodEvent: 1 });
    expect(result.problems[0]).toMatchObject({ kind: 'decrypt', index: 2, offset: records[2]!.offset });
    expect(result.problems[1]).toMatchObject({ kind: 'chain', index: 3 });
    await expect(readAll(path)).rejects.toMatchObject({ name: 'SessionReadError', index: 2, offset: records[2]!.offset });
  });

  it('finds an event removed from inside a shared record, even re-encrypted with the session key so the record authenticates', async () => {
    const { path } = await writeAnswer();
    // The first run of the answer goes: the record still chains to the one before it.
    const { offsets } = await reEncrypted(path, 2, (events) => events.filter((e) => e.meta.seq !== 3));
    const result = await verify(path);
    expect(result.status).toBe('broken');
    expect(result.lastGoodSeq).toBe(1);
    expect(result.problems[0]).toMatchObject({ kind: 'sequence', index: 2, offset: offsets[2], message: expect.stringContaining('holds seq 4 where seq 3 belongs') });
    // Its bytes changed, so the checkpoint's record no longer chains to it either.
    expect(result.problems.slice(1).map((p) => [p.kind, p.index])).toContainEqual(['chain', 3]);
    await expect(readAll(path)).rejects.toMatchObject({ name: 'SessionReadError', index: 2 });
  });

  it("finds a shared record's last event removed at the next record, which no longer follows it", async () => {
    const { path } = await writeAnswer();
    await reEncrypted(path, 2, (events) => events.slice(0, -1));
    const result = await verify(path);
    expect(result.status).toBe('broken');
    expect(result.problems.map((p) => [p.kind, p.index])).toEqual([
      ['sequence', 3],
      ['chain', 3],
      ['checkpoint', 3],
      ['signature', 3],
    ]);
  });

  it('finds two events of a shared record swapped, or an event added to it', async () => {
    const { path } = await writeAnswer();
    await reEncrypted(path, 2, ([head, a, b, end]) => [head!, b!, a!, end!]);
    expect((await verify(path)).problems[0]).toMatchObject({ kind: 'sequence', index: 2, message: expect.stringContaining('holds seq 4 where seq 3 belongs') });

    const { path: other } = await writeAnswer();
    await reEncrypted(other, 2, (events) => [...events.slice(0, 3), { meta: { ...events[2]!.meta, seq: 5 }, payload: Buffer.from('injected') }, { ...events[3]!, meta: { ...events[3]!.meta, seq: 6 } }]);
    const added = await verify(other);
    expect(added.problems.map((p) => [p.kind, p.index])).toEqual([
      ['sequence', 3],
      ['chain', 3],
      ['checkpoint', 3],
      ['signature', 3],
    ]);
  });

  it('finds a shared record dropped whole, and a file cut inside one', async () => {
    const { path } = await writeAnswer();
    const { bytes, records } = await opened(path);
    await writeFile(path, Buffer.concat([bytes.subarray(0, records[2]!.offset), bytes.subarray(records[3]!.offset)]));
    const dropped = await verify(path, { records: 4 });
    expect(dropped.problems[0]).toMatchObject({ kind: 'sequence', index: 2, message: expect.stringContaining('carries seq 6') });
    expect(dropped.problems.map((p) => p.kind)).toContain('mismatch');

    const { path: cut } = await writeAnswer({ seal: false });
    const { records: cutRecords } = await opened(cut);
    await truncate(cut, cutRecords[2]!.offset + 40);
    expect((await readAll(cut)).map((e) => e.seq)).toEqual([0, 1]);
    expect(await verify(cut)).toMatchObject({ status: 'interrupted', records: 2, lastGoodSeq: 1, lastGoodEvent: 1, lastGoodOffset: cutRecords[2]!.offset });
  });

  it('refuses a checkpoint that shares its record: what rides with it is covered by no signature', async () => {
    const path = join(dir, `shared-checkpoint-${randomBytes(4).toString('hex')}.rec`);
    const { dataKey, wrapped } = ring.newDataKey(SESSION);
    keysByFile.set(path, memoryKeys([[SESSION, wrapped]]));
    const header = encodeHeader({ session: SESSION, created: Date.now(), keyId: wrapped.keyId, compression: 'deflate' });
    const aad = sessionAad(SESSION);
    const first = await encodeRecord({ dataKey, sessionAad: aad, prev: sha256(header), events: [{ meta: { seq: 0, t: 0, type: 'exchange.chunk', exchange: 'req_1', dir: 'down', bytes: 2 }, payload: Buffer.from('ok') }], compression: 'deflate' });
    const prev = sha256(first);
    const signature = signCheckpoint(signing, checkpointMessage(SESSION, 1, prev)).toString('base64');
    const last = await encodeRecord({
      dataKey,
      sessionAad: aad,
      prev,
      events: [
        { meta: { seq: 1, t: 1, type: 'session.end', reason: 'closed', exchanges: 1 } },
        { meta: { seq: 2, t: 1, type: 'session.checkpoint', session: SESSION, records: 1, final_hash: prev.toString('hex'), signature, public_key: signing.fingerprint } },
      ],
      compression: 'deflate',
    });
    await writeFile(path, Buffer.concat([header, first, last]));
    const result = await verify(path);
    expect(result.status).toBe('broken');
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'checkpoint', index: 1, message: expect.stringContaining('shares its record with 1 other event') })]);
  });
});

describe('format 3: compression', () => {
  /** The coding byte of each record (0 stored, 1 compressed). */
  async function codings(path: string): Promise<number[]> {
    const { dataKey, records } = await opened(path);
    return records.map((r) => openRecord(r.frame, dataKey, sessionAad(SESSION))[HASH_BYTES]!);
  }

  it('compresses records by default, and stores every record of a file whose header says none', async () => {
    const { path } = await writeAnswer();
    expect(JSON.parse((await readFile(path)).toString('latin1').match(/\{"session".*?\}/)![0]) as object).toMatchObject({ compression: 'deflate' });
    expect(await codings(path)).toEqual([1, 1, 1, 1]);
    const { path: plain } = await writeAnswer({ compression: 'none' });
    expect(JSON.parse((await readFile(plain)).toString('latin1').match(/\{"session".*?\}/)![0]) as object).toMatchObject({ compression: 'none' });
    expect(await codings(plain)).toEqual([0, 0, 0, 0]);
    expect((await readAll(plain)).map((e) => e.type)).toEqual((await readAll(path)).map((e) => e.type));
    expect((await verify(plain)).ok).toBe(true);
    // What `none` costs: the same events take more bytes.
    expect((await readFile(plain)).length).toBeGreaterThan((await readFile(path)).length);
  });

  it('refuses a compressed record in a file whose header says none, though it authenticates', async () => {
    const { path } = await writeAnswer({ compression: 'none' });
    const { bytes, dataKey, records, header } = await opened(path);
    const decoded = decodeRecord(records[2]!.frame, dataKey, sessionAad(SESSION), header);
    const compressed = await encodeRecord({ dataKey, sessionAad: sessionAad(SESSION), prev: decoded.prev, events: decoded.events, compression: 'deflate' });
    await writeFile(path, Buffer.concat([bytes.subarray(0, records[2]!.offset), compressed, bytes.subarray(records[3]!.offset)]));
    expect((await verify(path)).problems[0]).toMatchObject({ kind: 'decrypt', index: 2 });
    await expect(readAll(path)).rejects.toMatchObject({ name: 'SessionReadError', index: 2 });
  });

  it('round-trips what does not compress, a large body and a batch larger than one record', async () => {
    const path = join(dir, `large-${randomBytes(4).toString('hex')}.rec`);
    const writer = await SessionWriter.create({ io: nodeRecordingIo, path, sessionId: SESSION, created: Date.now(), keyRing: ring, fsync: 'never', fsyncIntervalMs: 1000 });
    keysByFile.set(path, memoryKeys([[writer.sessionId, writer.wrappedKey]]));
    const noise = randomBytes(2000);
    await writer.append('exchange.chunk', { exchange: 'req_1', dir: 'up', bytes: noise.length }, noise);
    const large = Buffer.from('data: {"choices":[{"delta":{"content":"word "}}]}\n\n'.repeat(8000));
    await writer.append('exchange.chunk', { exchange: 'req_1', dir: 'down', bytes: large.length }, large);
    const runs = Array.from({ length: 6 }, (_, i) => Buffer.from(`run ${i} `.repeat(3000)));
    await Promise.all(runs.map((run) => writer.defer('exchange.chunk', { exchange: 'req_1', dir: 'down', bytes: run.length }, run)));
    await writer.seal(signing);
    const events = await readAll(path);
    expect(events[0]!.payload!.equals(noise)).toBe(true);
    expect(events[1]!.payload!.equals(large)).toBe(true);
    expect(events.slice(2, 8).map((e) => e.payload!.toString())).toEqual(runs.map((r) => r.toString()));
    // Six runs of 24 KiB: more than one record's worth, fewer records than runs.
    const recordsOfRuns = new Set(events.slice(2, 8).map((e) => e.record)).size;
    expect(recordsOfRuns).toBeGreaterThan(1);
    expect(recordsOfRuns).toBeLessThan(6);
    const { records } = await opened(path);
    // Random bytes cost what they are and the record's framing and metadata: never more than stored as they are.
    expect(records[0]!.frame.length).toBeLessThanOrEqual(noise.length + 256);
    expect((await readFile(path)).length).toBeLessThan(large.length / 10);
    expect(await verify(path)).toMatchObject({ ok: true, records: writer.records });
  });
});
