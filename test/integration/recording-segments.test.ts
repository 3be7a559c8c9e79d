/**
 * Open sessions in segments: two replicas (two Recordings, a spool directory each) on one shared index and
 * one real S3-protocol bucket (s3rver). Replica A's open session goes up as segments every upload interval;
 * replica B reads it from them while it runs, verifies it up to the last segment, and names the segment
 * that is altered or missing; once sealed, the whole file replaces them. A replica that stops without
 * sealing leaves its session verifiable up to its last segment, and B's sweep marks it interrupted.
 */
import { DeleteObjectCommand, GetObjectCommand, ListObjectsCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { connectionSchema } from '../../server/config/schema.js';
import type { Principal } from '../../server/identity/principal.js';
import { S3Archive } from '../../server/recording/archive/s3-archive.js';
import { openDirectoryIndex } from '../../server/recording/audit-index.js';
import { openSessionEvents } from '../../server/recording/export-reader.js';
import { KeyRing } from '../../server/recording/key-ring.js';
import { Recording } from '../../server/recording/recording.js';
import { signingKeyFrom, type SigningKey } from '../../server/recording/signing-key.js';
import { verifySession } from '../../server/recording/verify-session.js';
import { verdictText, verifyStorageDir, type SessionVerdict } from '../../server/recording/verify-storage-dir.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { s3Fixture } from '../helpers/s3-server.js';

const s3 = s3Fixture();
const PREFIX = 'recordings/';
const SECRET = 'ACME-314159 quarterly numbers';
const principal: Principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };
const connection = connectionSchema.parse({ name: 'llm', type: 'tcp', upstream: 'tcp://127.0.0.1:1', allow_groups: ['ml-eng'], record: { raw: true } });

interface Replicas {
  readonly a: Recording;
  readonly b: Recording;
  readonly client: S3Client;
  readonly bucket: string;
  readonly store: SqliteStore;
  readonly dirs: { a: string; b: string; index: string };
}

async function tempDir(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `sluice-seg-${name}-`));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Replicas a and b: one index, one bucket, one master key and signing key, a spool each. */
async function twoReplicas(options: { segmentMaxBytes?: number; retentionDays?: number } = {}): Promise<Replicas> {
  const bucket = await s3.bucket();
  const client = s3.client();
  const shared = await tempDir('index');
  const store = new SqliteStore({ file: join(shared, 'index.sqlite') });
  onTestFinished(() => store.close());
  const keyRing = new KeyRing([{ id: 'default', key: randomBytes(32) }]);
  const signingKey: SigningKey = signingKeyFrom(generateKeyPairSync('ed25519').privateKey);
  const dirs = { a: await tempDir('a'), b: await tempDir('b'), index: shared };
  const open = (replica: 'a' | 'b'): Promise<Recording> =>
    Recording.open({
      dir: dirs[replica],
      spoolDir: dirs[replica],
      archive: new S3Archive({ bucket, prefix: PREFIX, client }),
      store,
      keyRing,
      signingKey,
      replica,
      ...(options.retentionDays === undefined ? {} : { retentionDays: options.retentionDays }),
      // Long: the test says when segments go up (uploadSegments), so what is in the bucket is known.
      segments: { intervalMs: 3_600_000, ...(options.segmentMaxBytes === undefined ? {} : { segmentMaxBytes: options.segmentMaxBytes }) },
    });
  const a = await open('a');
  const b = await open('b');
  onTestFinished(() => b.close());
  return { a, b, client, bucket, store, dirs };
}

async function keysIn(r: Replicas): Promise<string[]> {
  const out = await r.client.send(new ListObjectsCommand({ Bucket: r.bucket }));
  return (out.Contents ?? []).map((o) => o.Key!.slice(PREFIX.length)).sort();
}

async function objectBytes(r: Replicas, name: string): Promise<Buffer> {
  const out = await r.client.send(new GetObjectCommand({ Bucket: r.bucket, Key: `${PREFIX}${name}` }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

/** The chunks (their payload text) replica `by` reads of the session. */
async function chunksReadBy(by: Recording, id: string, file: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of await openSessionEvents(id, by.source, file)) if (e.type === 'tcp.chunk') out.push(e.payload?.toString('utf8') ?? '');
  return out;
}

/** What `audit verify` says of every session in the bucket, with replica b's seal log and the shared index. */
async function auditVerify(r: Replicas): Promise<SessionVerdict[]> {
  const index = await openDirectoryIndex(r.dirs.index);
  try {
    const out: SessionVerdict[] = [];
    const archive = new S3Archive({ bucket: r.bucket, prefix: PREFIX, client: r.client });
    for await (const v of verifyStorageDir({ dir: r.dirs.b, archive, keyRing: r.b.keyRing, publicKey: r.b.publicKeyPem, ...(index === undefined ? {} : { index }) })) out.push(v);
    return out;
  } finally {
    await index?.close();
  }
}

async function writeChunks(a: Recording, id: string, texts: string[]): Promise<void> {
  const session = await a.session(id)!;
  for (const text of texts) await session.append('tcp.chunk', { exchange: 'x1', dir: 'up', bytes: text.length }, Buffer.from(text, 'utf8'));
}

async function openOnA(r: Replicas, id: string): Promise<string> {
  await r.a.openSession({ id, principal, connection, via: 'tunnel', clientAddress: '127.0.0.1' });
  return (await r.store.getSession(id))!.file;
}

describe('open sessions in segments', () => {
  it('is read by another replica while it runs, as segments that hold no plaintext; sealed, the whole file replaces them and verifies', async () => {
    const r = await twoReplicas();
    onTestFinished(() => r.a.close());
    const id = 'ses_seg_running';
    const file = await openOnA(r, id);
    // Nothing uploaded yet: B has nothing to read.
    await expect(chunksReadBy(r.b, id, file)).rejects.toThrow();

    await writeChunks(r.a, id, [`first ${SECRET}`, 'second']);
    await r.a.spool.uploadSegments();
    expect(await keysIn(r)).toEqual([file.replace(/\.rec$/, '.segments/00000000.seg')]);
    expect(await chunksReadBy(r.b, id, file)).toEqual([`first ${SECRET}`, 'second']);

    await writeChunks(r.a, id, ['third']);
    // Not uploaded yet: B reads what the segments hold, the tail is pending.
    expect(await chunksReadBy(r.b, id, file)).toEqual([`first ${SECRET}`, 'second']);
    await r.a.spool.uploadSegments();
    expect(await chunksReadBy(r.b, id, file)).toEqual([`first ${SECRET}`, 'second', 'third']);

    // Verified from B up to the last segment: every record good, not sealed yet.
    const open = await verifySession(r.b.source, file, { publicKey: r.b.signingKey.publicKey, expect: { sessionId: id } });
    expect(open).toMatchObject({ status: 'interrupted', records: 4, lastGoodSeq: 3 });
    expect(open.problems.map((p) => p.kind)).toEqual(['interrupted']);

    const segments = await keysIn(r);
    expect(segments).toHaveLength(2);
    for (const name of segments) expect((await objectBytes(r, name)).includes(Buffer.from(SECRET))).toBe(false);

    await r.a.closeSession(id, 'client closed');
    // The whole file replaced the segments (removed once it is there), and verifies from B against the index.
    await vi.waitFor(async () => expect(await keysIn(r)).toEqual([file]), { timeout: 5_000, interval: 50 });
    const row = (await r.store.getSession(id))!;
    const sealed = await verifySession(r.b.source, file, { publicKey: r.b.signingKey.publicKey, expect: { sessionId: id, records: row.records, finalHash: row.finalHash } });
    expect(sealed).toMatchObject({ ok: true, status: 'intact' });
    expect(await chunksReadBy(r.b, id, file)).toEqual([`first ${SECRET}`, 'second', 'third']);
  });

  it('cuts segments at segment_max, and verify names the segment with a flipped byte and the one deleted from the middle', async () => {
    const r = await twoReplicas({ segmentMaxBytes: 300 });
    onTestFinished(() => r.a.close());
    const id = 'ses_seg_tampered';
    const file = await openOnA(r, id);
    await writeChunks(r.a, id, Array.from({ length: 12 }, (_, i) => `chunk ${i} ${'x'.repeat(120)}`));
    await r.a.spool.uploadSegments();
    const segments = await keysIn(r);
    expect(segments.length).toBeGreaterThanOrEqual(4);
    const good = await verifySession(r.b.source, file, { publicKey: r.b.signingKey.publicKey });
    expect(good).toMatchObject({ status: 'interrupted', records: 13 });

    // A byte flipped near the end of segment 2 (inside a record's ciphertext).
    const victim = segments[2]!;
    const original = await objectBytes(r, victim);
    const flipped = Buffer.from(original);
    flipped[flipped.length - 20]! ^= 0x01;
    await r.client.send(new PutObjectCommand({ Bucket: r.bucket, Key: `${PREFIX}${victim}`, Body: flipped }));
    const altered = await verifySession(r.b.source, file, { publicKey: r.b.signingKey.publicKey });
    expect(altered.status).toBe('broken');
    expect(altered.problems).toContainEqual(expect.objectContaining({ kind: 'decrypt', message: expect.stringContaining(`in segment 2, ${victim}`) }));

    // Segment 1 deleted: the gap is named, and nothing after it is vouched for.
    await r.client.send(new PutObjectCommand({ Bucket: r.bucket, Key: `${PREFIX}${victim}`, Body: original }));
    await r.client.send(new DeleteObjectCommand({ Bucket: r.bucket, Key: `${PREFIX}${segments[1]!}` }));
    const gap = await verifySession(r.b.source, file, { publicKey: r.b.signingKey.publicKey });
    expect(gap.status).toBe('broken');
    expect(gap.problems).toContainEqual(expect.objectContaining({ kind: 'segment', message: expect.stringContaining(`Segment 1 (${segments[1]!}) is missing`) }));
    const [verdict, ...others] = await auditVerify(r);
    expect(others).toEqual([]);
    expect(verdict).toMatchObject({ id, file });
    expect(verdictText(verdict!)).toMatchObject({ status: 'broken', failed: true, text: expect.stringContaining(`Segment 1 (${segments[1]!}) is missing`) });

    // Segments put back out of order (segment 3's object under segment 1's name): named, too.
    await r.client.send(new PutObjectCommand({ Bucket: r.bucket, Key: `${PREFIX}${segments[1]!}`, Body: await objectBytes(r, segments[3]!) }));
    const reordered = await verifySession(r.b.source, file, { publicKey: r.b.signingKey.publicKey });
    expect(reordered.status).toBe('broken');
    expect(reordered.problems).toContainEqual(expect.objectContaining({ kind: 'segment', message: expect.stringContaining(`Segment 1 (${segments[1]!}) does not follow the segments before it: it says it is segment 3`) }));
  });

  it('a replica that stops without sealing: the survivor marks its session interrupted, verifiable up to the last segment', async () => {
    const r = await twoReplicas();
    const id = 'ses_seg_lost';
    const file = await openOnA(r, id);
    await writeChunks(r.a, id, ['before the last upload']);
    await r.a.spool.uploadSegments();
    await writeChunks(r.a, id, ['after it: lost with the replica']);
    // Replica a is gone, disk and all: its uploads stop and its spool is no more; nothing is sealed.
    await r.a.spool.close();
    await rm(r.dirs.a, { recursive: true, force: true });

    expect(await r.b.interruptSessionsOf('a', Date.now())).toEqual([id]);
    expect(await r.store.getSession(id)).toMatchObject({ status: 'interrupted' });
    expect(await chunksReadBy(r.b, id, file)).toEqual(['before the last upload']);
    const result = await verifySession(r.b.source, file, { publicKey: r.b.signingKey.publicKey, expect: { sessionId: id } });
    expect(result).toMatchObject({ status: 'interrupted', records: 2, lastGoodSeq: 1 });
    expect(result.problems.map((p) => p.kind)).toEqual(['interrupted']);
    const verdicts = await auditVerify(r);
    expect(verdicts.map((v) => ({ id: v.id, status: v.result?.status, records: v.result?.records, text: verdictText(v) }))).toEqual([
      { id, status: 'interrupted', records: 2, text: expect.objectContaining({ status: 'interrupted', failed: false }) },
    ]);
  });

  it('retention destroys a never-sealed session\'s segments with it', async () => {
    const r = await twoReplicas({ retentionDays: 1 });
    const id = 'ses_seg_expired';
    const file = await openOnA(r, id);
    await writeChunks(r.a, id, ['kept for a day']);
    await r.a.spool.uploadSegments();
    await r.a.spool.close();
    await r.b.interruptSessionsOf('a', Date.now());
    expect(await keysIn(r)).toHaveLength(1);
    expect(await r.b.sweep(Date.now() + 2 * 86_400_000)).toBe(1);
    expect(await keysIn(r)).toEqual([]);
    await expect(chunksReadBy(r.b, id, file)).rejects.toThrow();
  });

  it('counts an open session\'s bytes not yet uploaded against the spool', async () => {
    const r = await twoReplicas();
    onTestFinished(() => r.a.close());
    const id = 'ses_seg_spool';
    await openOnA(r, id);
    // Bytes that do not compress, so the file grows by about as many.
    await writeChunks(r.a, id, [randomBytes(6000).toString('base64')]);
    await vi.waitFor(async () => {
      // The uploader looks at open files at least once a second.
      expect(r.a.spool.stats()!.bytes).toBeGreaterThan(4096);
    }, { timeout: 5_000, interval: 100 });
    await r.a.spool.uploadSegments();
    expect(r.a.spool.stats()!.bytes).toBe(0);
  });
});
