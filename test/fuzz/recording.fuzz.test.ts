import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ArchiveReader } from '../../server/recording/archive/archive.js';
import { nodeRecordingIo } from '../../server/recording/file-io.js';
import { KeyRing } from '../../server/recording/key-ring.js';
import { decodeHeader, FILE_MAGIC, FORMAT_VERSION, HEADER_PREFIX, HeaderError, LENGTH_BYTES } from '../../server/recording/record-format.js';
import { readSession, SessionReadError } from '../../server/recording/session-reader.js';
import type { SessionKeyLookup, SessionSource } from '../../server/recording/session-source.js';
import { SessionWriter } from '../../server/recording/session-writer.js';
import { loadOrCreateSigningKey, type SigningKey } from '../../server/recording/signing-key.js';
import { verifySession } from '../../server/recording/verify-session.js';
import { memoryKeys } from '../helpers/stored-sessions.js';
import { fuzz, fuzzSettings } from './fuzz-settings.js';

const SESSION = 'ses_0123456789abcdef0123456789abcdef';
const NAME = 'fuzzed.rec';
const ring = new KeyRing([{ id: 'k1', key: randomBytes(32) }]);

let signing: SigningKey;
let keys: SessionKeyLookup;
/** A real sealed session file, as SessionWriter writes it. */
let sealed: Buffer;
/** Byte offset of each record (the first is just past the header). */
let offsets: number[];

/** An archive of one object held in memory: a case costs no file I/O, and the object is exactly the bytes given. */
function oneObject(bytes: Buffer): ArchiveReader {
  return {
    // Cut in pieces, as a file or an S3 body arrives, so the scanner's joins are exercised too.
    get: async () => Readable.from(Array.from({ length: Math.ceil(bytes.length / 97) }, (_, i) => bytes.subarray(i * 97, (i + 1) * 97))),
    range: async (_name, offset, length) => bytes.subarray(offset, offset + length),
  };
}

function source(bytes: Buffer): SessionSource {
  return { objects: oneObject(bytes), keys, keyRing: ring };
}

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-fuzz-recording-'));
  try {
    signing = await loadOrCreateSigningKey(dir);
    const path = join(dir, NAME);
    const writer = await SessionWriter.create({ io: nodeRecordingIo, path, sessionId: SESSION, created: Date.now(), keyRing: ring, fsync: 'never', fsyncIntervalMs: 1000 });
    await writer.append('session.start', {
      session: SESSION,
      started_at: writer.created,
      user: { sub: 'alice', groups: ['ml-eng'], issuer: 'https://idp' },
      connection: { name: 'llm', type: 'http' },
      via: 'tunnel',
      client_address: '127.0.0.1',
      record: { request_body: 'raw', response_body: 'raw', raw: false },
    });
    await writer.append('exchange.request', { exchange: 'req_1', method: 'POST', path: '/v1/chat/completions', headers: {}, decision: { action: 'allow' }, body: { capture: 'raw', bytes: 5 } }, Buffer.from('hello'));
    for (let i = 0; i < 6; i++) await writer.append('exchange.chunk', { exchange: 'req_1', dir: 'down', bytes: 6 }, Buffer.from(`chunk${i}`), 10 + i);
    // And a record several events share, as an answer's head, runs and end do.
    await Promise.all([
      writer.defer('exchange.response', { exchange: 'req_2', status: 200, headers: {} }),
      writer.defer('exchange.chunk', { exchange: 'req_2', dir: 'down', bytes: 6 }, Buffer.from('shared')),
      writer.append('exchange.end', { exchange: 'req_2', status: 200, complete: true, duration_ms: 1, bytes_up: 0, bytes_down: 6 }),
    ]);
    await writer.append('session.end', { reason: 'closed', exchanges: 1 });
    keys = memoryKeys([[writer.sessionId, writer.wrappedKey]]);
    await writer.seal(signing);
    sealed = await readFile(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  offsets = [];
  for (let at = HEADER_PREFIX + sealed.readUInt32BE(HEADER_PREFIX - 4); at < sealed.length; at += LENGTH_BYTES + sealed.readUInt32BE(at)) offsets.push(at);
  // The unaltered file is intact: every "not intact" below is the alteration's doing.
  expect(await verifySession(source(sealed), NAME, { publicKey: signing.publicKey })).toMatchObject({ ok: true, status: 'intact' });
});

/** Random bytes, and bytes that get past the first checks: the magic, a version, a real header, a real file's prefix. */
const hostileBytes = fc.oneof(
  fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
  fc
    .tuple(fc.constantFrom(FORMAT_VERSION, 2, 1, 0, 4, 255), fc.integer({ min: 0, max: 0xffffffff }), fc.uint8Array({ maxLength: 400 }))
    .map(([version, length, rest]) => {
      const prefix = Buffer.alloc(HEADER_PREFIX);
      FILE_MAGIC.copy(prefix);
      prefix[FILE_MAGIC.length] = version;
      prefix.writeUInt32BE(length, FILE_MAGIC.length + 1);
      return Buffer.concat([prefix, rest]);
    }),
  fc
    .tuple(
      fc.constantFrom(FORMAT_VERSION, 2, 1),
      fc.jsonValue({ maxDepth: 2 }),
      fc.record(
        { session: fc.constantFrom(SESSION, 'x'), created: fc.integer(), key_id: fc.constantFrom('k1', 'k2'), wrapped_key: fc.option(fc.base64String({ maxLength: 80 })), compression: fc.constantFrom('deflate', 'none', 'zip') },
        { requiredKeys: [] },
      ),
      fc.uint8Array({ maxLength: 300 }),
    )
    .map(([version, extra, fields, rest]) => {
      const json = Buffer.from(JSON.stringify(typeof extra === 'object' && extra !== null && !Array.isArray(extra) ? { ...extra, ...fields } : fields));
      const prefix = Buffer.alloc(HEADER_PREFIX);
      FILE_MAGIC.copy(prefix);
      prefix[FILE_MAGIC.length] = version;
      prefix.writeUInt32BE(json.length, FILE_MAGIC.length + 1);
      return Buffer.concat([prefix, json, rest]);
    }),
  // The sealed file's header and some records, then random bytes: frames with plausible lengths and nonsense inside.
  fc.tuple(fc.nat(), fc.uint8Array({ maxLength: 400 })).map(([n, rest]) => Buffer.concat([sealed.subarray(0, offsets[n % offsets.length]), Buffer.from(rest)])),
);

/** One alteration of the sealed file, and a name for it in a failure report. */
const alteration = fc.oneof(
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })).map(([at, xor]) => ({ kind: 'flip' as const, at, xor })),
  fc.nat().map((at) => ({ kind: 'truncate' as const, at })),
  fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 64 })).map(([at, bytes]) => ({ kind: 'insert' as const, at, bytes })),
  fc.tuple(fc.nat(), fc.nat()).map(([a, b]) => ({ kind: 'swap' as const, a, b })),
);
type Alteration = typeof alteration extends fc.Arbitrary<infer T> ? T : never;

function alter(bytes: Buffer, change: Alteration): Buffer {
  switch (change.kind) {
    case 'flip': {
      const out = Buffer.from(bytes);
      out[change.at % out.length]! ^= change.xor;
      return out;
    }
    case 'truncate':
      return bytes.subarray(0, change.at % bytes.length);
    case 'insert': {
      const at = change.at % (bytes.length + 1);
      return Buffer.concat([bytes.subarray(0, at), Buffer.from(change.bytes), bytes.subarray(at)]);
    }
    case 'swap': {
      // Two different records trade places; the records in between stay where they were.
      const n = offsets.length;
      let [a, b] = [change.a % n, change.b % n].sort((x, y) => x - y) as [number, number];
      if (a === b) b = (a + 1) % n;
      if (b < a) [a, b] = [b, a];
      const end = (i: number) => (i + 1 < n ? offsets[i + 1]! : bytes.length);
      return Buffer.concat([
        bytes.subarray(0, offsets[a]),
        bytes.subarray(offsets[b], end(b)),
        bytes.subarray(end(a), offsets[b]),
        bytes.subarray(offsets[a], end(a)),
        bytes.subarray(end(b)),
      ]);
    }
  }
}

describe('session file decoder and verification (fuzz)', () => {
  it('reads any bytes to a verdict, never a crash: the header decoder throws HeaderError only, the reader SessionReadError or HeaderError only', { timeout: fuzzSettings(2000).timeoutMs }, async () => {
    await fuzz(
      'recording: any bytes',
      fc.asyncProperty(hostileBytes, async (bytes) => {
        try {
          decodeHeader(bytes);
        } catch (err) {
          expect(err).toBeInstanceOf(HeaderError);
        }
        try {
          for await (const _ of readSession(source(bytes), NAME));
        } catch (err) {
          if (!(err instanceof SessionReadError)) expect(err).toBeInstanceOf(HeaderError);
        }
        // verifySession never throws for a damaged file; a prefix of the sealed file is never intact.
        const result = await verifySession(source(bytes), NAME, { publicKey: signing.publicKey });
        if (!bytes.equals(sealed)) expect(result).toMatchObject({ ok: false, status: expect.not.stringMatching(/^intact$/) });
      }),
      2000,
    );
  });

  it('never verifies a sealed session as intact after one byte flip, truncation, insertion or swap of two records', { timeout: fuzzSettings(2000).timeoutMs }, async () => {
    await fuzz(
      'recording: altered sessions',
      fc.asyncProperty(alteration, async (change) => {
        const altered = alter(sealed, change);
        expect(altered.equals(sealed)).toBe(false);
        const result = await verifySession(source(altered), NAME, { publicKey: signing.publicKey });
        expect(result.ok).toBe(false);
        expect(result.status).not.toBe('intact');
        expect(result.problems.length).toBeGreaterThan(0);
      }),
      2000,
    );
  });
});
