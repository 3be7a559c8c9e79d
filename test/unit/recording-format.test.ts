import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { nodeRecordingIo } from '../../server/recording/file-io.js';
import { KeyRing } from '../../server/recording/key-ring.js';
import { FILE_MAGIC, HEADER_PREFIX, LENGTH_BYTES, sha256 } from '../../server/recording/record-format.js';
import { readSession, SessionReadError } from '../../server/recording/session-reader.js';
import { NO_SESSION_KEYS, type SessionKeyLookup } from '../../server/recording/session-source.js';
import { SessionWriter } from '../../server/recording/session-writer.js';
import { loadOrCreateSigningKey, signingKeyFrom, type SigningKey } from '../../server/recording/signing-key.js';
import { verifySession } from '../../server/recording/verify-session.js';
import { dirSource, memoryKeys } from '../helpers/stored-sessions.js';

const SESSION = 'ses_0123456789abcdef0123456789abcdef';
const SECRET_PROMPT = 'the launch code is ALPHA-7-TANGO';

let dir: string;
let signing: SigningKey;
const ring = new KeyRing([{ id: 'k1', key: randomBytes(32) }]);
/** The data key of each file written here, by file: what the index keeps by session id. */
const keysByFile = new Map<string, SessionKeyLookup>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-format-'));
  signing = await loadOrCreateSigningKey(dir);
  return () => rm(dir, { recursive: true, force: true });
});

/** Writes a sealed session of `n` chunk records after a start and a request; returns the path and record offsets. */
async function writeSession(options: { n?: number; seal?: boolean; keyRing?: KeyRing; id?: string } = {}): Promise<{ path: string; offsets: number[] }> {
  const path = join(dir, `${options.id ?? SESSION}-${randomBytes(4).toString('hex')}.rec`);
  const writer = await SessionWriter.create({
    io: nodeRecordingIo,
    path,
    sessionId: options.id ?? SESSION,
    created: Date.now(),
    keyRing: options.keyRing ?? ring,
    fsync: 'never',
    fsyncIntervalMs: 1000,
  });
  await writer.append('session.start', {
    session: options.id ?? SESSION,
    started_at: writer.created,
    user: { sub: 'alice', groups: ['ml-eng'], issuer: 'https://idp' },
    connection: { name: 'llm', type: 'http' },
    via: 'tunnel',
    client_address: '127.0.0.1',
    record: { request_body: 'raw', response_body: 'raw', raw: false },
  });
  await writer.append('exchange.request', { exchange: 'req_1', method: 'POST', path: '/v1/chat/completions', headers: {}, decision: { action: 'allow' }, body: { capture: 'raw', bytes: SECRET_PROMPT.length } }, Buffer.from(SECRET_PROMPT));
  // Awaited one by one: each chunk is a record of its own, so the tests below can cut and swap single records.
  for (let i = 0; i < (options.n ?? 5); i++) await writer.append('exchange.chunk', { exchange: 'req_1', dir: 'down', bytes: 6 }, Buffer.from(`chunk${i}`), 10 + i);
  keysByFile.set(path, memoryKeys([[writer.sessionId, writer.wrappedKey]]));
  if (options.seal ?? true) await writer.seal(signing);
  else await writer.close();
  const bytes = await readFile(path);
  const offsets: number[] = [];
  let at = HEADER_PREFIX + bytes.readUInt32BE(HEADER_PREFIX - 4);
  while (at < bytes.length) {
    offsets.push(at);
    at += LENGTH_BYTES + bytes.readUInt32BE(at);
  }
  return { path, offsets };
}

async function writeSessionSignedBy(key: SigningKey): Promise<string> {
  const path = join(dir, `forged-${randomBytes(4).toString('hex')}.rec`);
  const writer = await SessionWriter.create({ io: nodeRecordingIo, path, sessionId: SESSION, created: Date.now(), keyRing: ring, fsync: 'never', fsyncIntervalMs: 1000 });
  await writer.append('exchange.chunk', { exchange: 'req_1', dir: 'down', bytes: 1 });
  await writer.append('session.end', { reason: 'closed', exchanges: 1 });
  await writer.seal(key);
  keysByFile.set(path, memoryKeys([[writer.sessionId, writer.wrappedKey]]));
  return path;
}

/** The file at `path` as a reader sees it: its archive object, and the index's copy of its key. */
function source(path: string, keyRing = ring) {
  return dirSource(dir, keyRing, keysByFile.get(path));
}

async function readAll(path: string, keyRing = ring) {
  const events = [];
  for await (const e of readSession(source(path, keyRing), basename(path))) events.push(e);
  return events;
}

function verify(path: string, options: { keyRing?: KeyRing; publicKey: Parameters<typeof verifySession>[2]['publicKey']; expect?: { records?: number } }) {
  return verifySession(source(path, options.keyRing), basename(path), { publicKey: options.publicKey, ...(options.expect === undefined ? {} : { expect: options.expect }) });
}

describe('session file: record, read, verify', () => {
  it('round-trips every event in order, with payloads, and holds no plaintext', async () => {
    const { path, offsets } = await writeSession();
    const events = await readAll(path);
    expect(events.map((e) => e.type)).toEqual(['session.start', 'exchange.request', ...Array(5).fill('exchange.chunk'), 'session.checkpoint']);
    expect(events.map((e) => e.seq)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(events.map((e) => e.offset)).toEqual(offsets);
    expect(events[1]!.payload?.toString()).toBe(SECRET_PROMPT);
    expect(events[1]!.fields).toMatchObject({ exchange: 'req_1', method: 'POST', path: '/v1/chat/completions' });
    expect(events.slice(2, 7).map((e) => [e.t, e.payload?.toString()])).toEqual([0, 1, 2, 3, 4].map((i) => [10 + i, `chunk${i}`]));

    const bytes = await readFile(path);
    expect(bytes.includes(Buffer.from(SECRET_PROMPT))).toBe(false);
    expect(bytes.includes(Buffer.from('chunk0'))).toBe(false);
    expect(bytes.includes(Buffer.from('alice'))).toBe(false);

    expect(await verify(path, { publicKey: signing.publicKeyPem })).toEqual({
      ok: true,
      status: 'intact',
      session: SESSION,
      keyId: 'k1',
      records: 8,
      lastGoodSeq: 7,
      lastGoodEvent: 7,
      lastGoodOffset: bytes.length,
      // The checkpoint is the last record: the seal log pins its hash.
      headHash: sha256(bytes.subarray(offsets[7]!)).toString('hex'),
      problems: [],
    });
  });

  it('reports a flipped byte with the record it is in', async () => {
    const { path, offsets } = await writeSession();
    const bytes = await readFile(path);
    bytes[offsets[3]! + 20]! ^= 0x01;
    await writeFile(path, bytes);
    const result = await verify(path, { publicKey: signing.publicKey });
    expect(result.ok).toBe(false);
    expect(result.status).toBe('broken');
    expect(result.lastGoodSeq).toBe(2);
    expect(result.problems[0]).toMatchObject({ kind: 'decrypt', index: 3, offset: offsets[3] });
    // The next record no longer chains to the altered bytes either.
    expect(result.problems[1]).toMatchObject({ kind: 'chain', index: 4, offset: offsets[4] });
    await expect(readAll(path)).rejects.toMatchObject({ name: 'SessionReadError', index: 3, offset: offsets[3] });
  });

  it('reports a dropped record where the gap is', async () => {
    const { path, offsets } = await writeSession();
    const bytes = await readFile(path);
    await writeFile(path, Buffer.concat([bytes.subarray(0, offsets[4]), bytes.subarray(offsets[5])]));
    const result = await verify(path, { publicKey: signing.publicKey });
    expect(result.status).toBe('broken');
    expect(result.lastGoodSeq).toBe(3);
    expect(result.problems[0]).toMatchObject({ kind: 'sequence', index: 4, offset: offsets[4] });
    expect(result.problems[1]).toMatchObject({ kind: 'chain', index: 4 });
    expect(result.problems.some((p) => p.kind === 'checkpoint')).toBe(true);
  });

  it('reports two swapped records at the first of them', async () => {
    const { path, offsets } = await writeSession();
    const bytes = await readFile(path);
    const a = bytes.subarray(offsets[3], offsets[4]);
    const b = bytes.subarray(offsets[4], offsets[5]);
    await writeFile(path, Buffer.concat([bytes.subarray(0, offsets[3]), b, a, bytes.subarray(offsets[5])]));
    const result = await verify(path, { publicKey: signing.publicKey });
    expect(result.status).toBe('broken');
    expect(result.lastGoodSeq).toBe(2);
    expect(result.problems.filter((p) => p.kind === 'sequence').map((p) => p.index)).toEqual([3, 4]);
    await expect(readAll(path)).rejects.toBeInstanceOf(SessionReadError);
  });

  it('reads a file cut inside a record up to its last whole record, and says where it ends', async () => {
    const { path, offsets } = await writeSession({ seal: false });
    await truncate(path, offsets[5]! + 7);
    const events = await readAll(path);
    expect(events.map((e) => e.seq)).toEqual([0, 1, 2, 3, 4]);
    const result = await verify(path, { publicKey: signing.publicKey });
    expect(result).toMatchObject({ ok: false, status: 'interrupted', records: 5, lastGoodSeq: 4, lastGoodOffset: offsets[5] });
    expect(result.problems.map((p) => [p.kind, p.index, p.offset])).toEqual([
      ['truncated', 5, offsets[5]],
      ['interrupted', 5, offsets[5]! + 7],
    ]);
  });

  it('calls a sealed session cut short broken when the index knows its length', async () => {
    const { path, offsets } = await writeSession();
    const records = offsets.length;
    await truncate(path, offsets[records - 1]!);
    const alone = await verify(path, { publicKey: signing.publicKey });
    expect(alone.status).toBe('interrupted');
    const withIndex = await verify(path, { publicKey: signing.publicKey, expect: { records } });
    expect(withIndex.status).toBe('broken');
    expect(withIndex.problems.find((p) => p.kind === 'mismatch')?.message).toContain(`has ${records} records; the file has ${records - 1}`);
  });

  it('refuses a checkpoint signed by another key, or with its signature replaced', async () => {
    const { path } = await writeSession();
    const other = signingKeyFrom(generateKeyPairSync('ed25519').privateKey);
    const result = await verify(path, { publicKey: other.publicKey });
    expect(result.status).toBe('broken');
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'signature', index: 7 })]);
    expect(result.lastGoodSeq).toBe(6);

    // A checkpoint re-made by someone holding the data key but not the signing key: the fingerprint claims ours.
    const forged = await writeSessionSignedBy({ ...other, fingerprint: signing.fingerprint });
    const forgedResult = await verify(forged, { publicKey: signing.publicKey });
    expect(forgedResult.status).toBe('broken');
    expect(forgedResult.problems).toEqual([expect.objectContaining({ kind: 'signature', index: 2, message: expect.stringContaining('does not verify') })]);
  });

  it('names a session with no checkpoint interrupted, every record still good', async () => {
    const { path } = await writeSession({ seal: false });
    const result = await verify(path, { publicKey: signing.publicKey });
    expect(result).toMatchObject({ ok: false, status: 'interrupted', records: 7, lastGoodSeq: 6 });
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'interrupted', index: 7 })]);
  });

  it('rejects an altered header: the first record no longer chains to it', async () => {
    const { path } = await writeSession();
    const bytes = await readFile(path);
    const text = bytes.toString('latin1').replace('"created":', '"created":1');
    await writeFile(path, Buffer.from(text, 'latin1'));
    // The header's length prefix now disagrees with its JSON, or the chain breaks: either way, not intact.
    const result = await verify(path, { publicKey: signing.publicKey });
    expect(result.ok).toBe(false);
    expect(result.status).toBe('broken');
  });

  it('names the key problem when the master key is not in the ring', async () => {
    const { path } = await writeSession();
    const stranger = new KeyRing([{ id: 'k9', key: randomBytes(32) }]);
    const result = await verify(path, { keyRing: stranger, publicKey: signing.publicKey });
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'key', index: -1, message: expect.stringContaining('"k1"') })]);
    await expect(readAll(path, stranger)).rejects.toThrow(/No master key with id "k1"/);
    const wrongKey = new KeyRing([{ id: 'k1', key: randomBytes(32) }]);
    expect((await verify(path, { keyRing: wrongKey, publicKey: signing.publicKey })).problems[0]?.kind).toBe('key');
  });

  it('still decrypts sessions under an old master key after a new one is added to the ring', async () => {
    const oldKey = { id: 'k1', key: randomBytes(32) };
    const before = new KeyRing([oldKey]);
    const { path: oldSession } = await writeSession({ keyRing: before });

    const rotated = new KeyRing([{ id: 'k2', key: randomBytes(32) }, oldKey]);
    expect(rotated.currentId).toBe('k2');
    const { path: newSession } = await writeSession({ keyRing: rotated });

    expect((await readAll(oldSession, rotated)).at(1)?.payload?.toString()).toBe(SECRET_PROMPT);
    expect(await verify(oldSession, { keyRing: rotated, publicKey: signing.publicKey })).toMatchObject({ ok: true, keyId: 'k1' });
    expect(await verify(newSession, { keyRing: rotated, publicKey: signing.publicKey })).toMatchObject({ ok: true, keyId: 'k2' });
    // The old ring cannot read what the new key wrapped.
    expect((await verify(newSession, { keyRing: before, publicKey: signing.publicKey })).problems[0]?.kind).toBe('key');
  });

  it('keeps the signing key in a 0600 file and reuses it', async () => {
    const again = await loadOrCreateSigningKey(dir);
    expect(again.publicKeyPem).toBe(signing.publicKeyPem);
    const { stat } = await import('node:fs/promises');
    expect((await stat(join(dir, 'signing-key.pem'))).mode & 0o777).toBe(0o600);
    const other = await mkdtemp(join(tmpdir(), 'sluice-format-'));
    onTestFinished(() => rm(other, { recursive: true, force: true }));
    expect((await loadOrCreateSigningKey(other)).publicKeyPem).not.toBe(signing.publicKeyPem);
  });
});

describe('format 2 on: the data key is kept in the index, not in the file', () => {
  it('writes a version 3 header that names the master key and holds no wrapped key; without the index copy nothing opens', async () => {
    const { path } = await writeSession();
    const bytes = await readFile(path);
    expect(bytes.subarray(0, FILE_MAGIC.length).equals(FILE_MAGIC)).toBe(true);
    expect(bytes[FILE_MAGIC.length]).toBe(3);
    const header = JSON.parse(bytes.subarray(HEADER_PREFIX, HEADER_PREFIX + bytes.readUInt32BE(HEADER_PREFIX - 4)).toString('utf8')) as Record<string, unknown>;
    expect(header).toMatchObject({ session: SESSION, key_id: 'k1', compression: 'deflate' });
    expect(header).not.toHaveProperty('wrapped_key');
    const wrapped = (await keysByFile.get(path)!.getSessionKey(SESSION))!.wrapped;
    expect(bytes.includes(wrapped)).toBe(false);
    expect(bytes.includes(Buffer.from(wrapped.toString('base64')))).toBe(false);

    // What an erased session is: the file intact, its key row gone. It is still framed (8 records, its last
    // hash), so a seal log can pin it, but nothing in it is vouched for.
    const erased = dirSource(dir, ring, NO_SESSION_KEYS);
    const result = await verifySession(erased, basename(path), { publicKey: signing.publicKey });
    expect(result).toMatchObject({ ok: false, status: 'broken', session: SESSION, keyId: 'k1', records: 8, lastGoodSeq: -1 });
    expect(result.headHash).toBe((await verify(path, { publicKey: signing.publicKey })).headHash);
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'key', index: -1, message: expect.stringContaining('holds no data key for session') })]);
    const reading = (async () => {
      for await (const e of readSession(erased, basename(path))) void e;
    })();
    await expect(reading).rejects.toMatchObject({ name: 'SessionReadError', index: -1 });
  });

  it("refuses an index key row filed under another master key id than the file names", async () => {
    const { path } = await writeSession();
    const other = new KeyRing([{ id: 'k2', key: randomBytes(32) }]);
    const misfiled = memoryKeys([[SESSION, other.wrap(randomBytes(32), SESSION)]]);
    const result = await verifySession(dirSource(dir, new KeyRing([{ id: 'k1', key: randomBytes(32) }, { id: 'k2', key: randomBytes(32) }]), misfiled), basename(path), { publicKey: signing.publicKey });
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'key', message: expect.stringContaining('under master key "k2", but its file names "k1"') })]);
  });

  it('refuses a version 3 header that carries a wrapped key: a key beside its data would survive erasure', async () => {
    const { path } = await writeSession();
    const bytes = await readFile(path);
    const length = bytes.readUInt32BE(HEADER_PREFIX - 4);
    const json = JSON.parse(bytes.subarray(HEADER_PREFIX, HEADER_PREFIX + length).toString('utf8')) as Record<string, unknown>;
    const planted = Buffer.from(JSON.stringify({ ...json, wrapped_key: randomBytes(60).toString('base64') }));
    const prefix = Buffer.from(bytes.subarray(0, HEADER_PREFIX));
    prefix.writeUInt32BE(planted.length, HEADER_PREFIX - 4);
    await writeFile(path, Buffer.concat([prefix, planted, bytes.subarray(HEADER_PREFIX + length)]));
    const result = await verify(path, { publicKey: signing.publicKey });
    expect(result.status).toBe('broken');
    expect(result.problems).toEqual([expect.objectContaining({ kind: 'header', message: expect.stringContaining('carries no wrapped key') })]);
  });
});

describe('format 1 files (the wrapped key in the header) still read and verify', () => {
  const fixture = new URL('../fixtures/recording-v1/', import.meta.url).pathname;

  it('verifies and reads the format 1 fixture with no index at all, its key from its own header', async () => {
    const row = JSON.parse(await readFile(join(fixture, 'index-row.json'), 'utf8')) as { id: string; file: string; records: number; finalHash: string };
    const bytes = await readFile(join(fixture, row.file));
    expect(bytes[FILE_MAGIC.length]).toBe(1);
    const keyRing = new KeyRing([{ id: 'default', key: Buffer.from((await readFile(join(fixture, 'master-key.b64'), 'utf8')).trim(), 'base64') }]);
    const publicKey = createPublicKey(await readFile(join(fixture, 'public-key.pem')));
    const fromDir = dirSource(fixture, keyRing, NO_SESSION_KEYS);
    const result = await verifySession(fromDir, row.file, { publicKey, expect: { sessionId: row.id, records: row.records, finalHash: row.finalHash } });
    expect(result).toMatchObject({ ok: true, status: 'intact', session: row.id, keyId: 'default', records: row.records, problems: [] });

    const events = [];
    for await (const e of readSession(fromDir, row.file)) events.push(e);
    expect(events.map((e) => e.type)).toEqual(['session.start', 'exchange.request', 'exchange.response', 'exchange.chunk', 'exchange.end', 'session.end', 'session.checkpoint']);
    expect(events[1]!.payload?.toString()).toContain('hello from a v1 file');

    // The wrong master key: the header's wrapped key does not open.
    const wrong = await verifySession(dirSource(fixture, new KeyRing([{ id: 'default', key: randomBytes(32) }])), row.file, { publicKey });
    expect(wrong.problems[0]?.kind).toBe('key');
  });
});

describe('format 2 files (one uncompressed event per record) still read and verify', () => {
  const fixture = new URL('../fixtures/recording-v2/', import.meta.url).pathname;

  async function fixtureSource(dirOf = fixture) {
    const row = JSON.parse(await readFile(join(fixture, 'index-row.json'), 'utf8')) as { id: string; file: string; keyId: string; wrappedKey: string; records: number; finalHash: string };
    const keyRing = new KeyRing([{ id: 'default', key: Buffer.from((await readFile(join(fixture, 'master-key.b64'), 'utf8')).trim(), 'base64') }]);
    const keys = memoryKeys([[row.id, { keyId: row.keyId, wrapped: Buffer.from(row.wrappedKey, 'base64') }]]);
    return { row, source: dirSource(dirOf, keyRing, keys), publicKey: createPublicKey(await readFile(join(fixture, 'public-key.pem'))) };
  }

  it('verifies and reads the format 2 fixture with its key from the index row, one event per record', async () => {
    const { row, source: fromDir, publicKey } = await fixtureSource();
    expect((await readFile(join(fixture, row.file)))[FILE_MAGIC.length]).toBe(2);
    const result = await verifySession(fromDir, row.file, { publicKey, expect: { sessionId: row.id, records: row.records, finalHash: row.finalHash } });
    expect(result).toMatchObject({ ok: true, status: 'intact', session: row.id, keyId: 'default', records: 7, lastGoodSeq: 6, problems: [] });
    const events = [];
    for await (const e of readSession(fromDir, row.file)) events.push(e);
    expect(events.map((e) => [e.seq, e.type])).toEqual(
      ['session.start', 'exchange.request', 'exchange.response', 'exchange.chunk', 'exchange.end', 'session.end', 'session.checkpoint'].map((type, i) => [i, type]),
    );
    expect(new Set(events.map((e) => e.offset)).size).toBe(7);
    expect(events[1]!.payload?.toString()).toContain('hello from a v2 file');
    expect(events[3]!.payload?.toString()).toContain('an answer kept in format 2');
  });

  it('still finds a flipped byte, a dropped record and a cut in a format 2 file, at the record they are in', async () => {
    const { row, publicKey } = await fixtureSource();
    const copy = await mkdtemp(join(tmpdir(), 'sluice-v2-'));
    onTestFinished(() => rm(copy, { recursive: true, force: true }));
    const { source: fromCopy } = await fixtureSource(copy);
    const bytes = await readFile(join(fixture, row.file));
    const offsets: number[] = [];
    for (let at = HEADER_PREFIX + bytes.readUInt32BE(HEADER_PREFIX - 4); at < bytes.length; at += LENGTH_BYTES + bytes.readUInt32BE(at)) offsets.push(at);
    await mkdir(dirname(join(copy, row.file)), { recursive: true });
    const check = async (altered: Buffer) => {
      await writeFile(join(copy, row.file), altered);
      return verifySession(fromCopy, row.file, { publicKey, expect: { records: row.records } });
    };

    const flipped = Buffer.from(bytes);
    flipped[offsets[3]! + 20]! ^= 0x01;
    const a = await check(flipped);
    expect(a).toMatchObject({ status: 'broken', lastGoodSeq: 2 });
    expect(a.problems[0]).toMatchObject({ kind: 'decrypt', index: 3, offset: offsets[3] });

    const dropped = await check(Buffer.concat([bytes.subarray(0, offsets[3]), bytes.subarray(offsets[4])]));
    expect(dropped).toMatchObject({ status: 'broken', lastGoodSeq: 2 });
    expect(dropped.problems[0]).toMatchObject({ kind: 'sequence', index: 3, offset: offsets[3] });

    const cut = await check(bytes.subarray(0, offsets[5]! + 9));
    expect(cut).toMatchObject({ status: 'broken', records: 5, lastGoodSeq: 4 });
    expect(cut.problems.map((p) => p.kind)).toEqual(['truncated', 'interrupted', 'mismatch']);
  });
});
