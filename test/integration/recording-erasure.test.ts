import { randomBytes } from 'node:crypto';
import { link, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { connectionSchema } from '../../server/config/schema.js';
import type { Principal } from '../../server/identity/principal.js';
import { KeyRing } from '../../server/recording/key-ring.js';
import { headerLength } from '../../server/recording/record-format.js';
import { Recording } from '../../server/recording/recording.js';
import { loadOrCreateSigningKey } from '../../server/recording/signing-key.js';
import { INDEX_FILE } from '../../server/recording/storage-layout.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { olderFormatSession, placeOlderSession } from '../helpers/older-format-session.js';

const alice: Principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };
const connection = connectionSchema.parse({ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:1', allow_groups: ['ml-eng'] });
const DAY = 86_400_000;

async function setUp(keyRing = new KeyRing([{ id: 'default', key: randomBytes(32) }])) {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-erasure-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const store = new SqliteStore({ file: join(dir, INDEX_FILE) });
  onTestFinished(() => store.close());
  const signingKey = await loadOrCreateSigningKey(dir);
  const recording = await Recording.open({ dir, store, keyRing, signingKey, retentionDays: 30 });
  onTestFinished(() => recording.close());
  return { dir, store, recording };
}

/** The bytes of a file, or none when it does not exist (SQLite removes its WAL with the last connection). */
async function bytesOf(path: string): Promise<Buffer> {
  return readFile(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return Buffer.alloc(0);
    throw err;
  });
}

describe('erasure reaches the bytes on disk', () => {
  it('leaves the wrapped data key of an erased session neither in the index file nor in its WAL, while the gateway runs', async () => {
    const { dir, store, recording } = await setUp();
    // Sessions opened around the erased one, so its key shares pages with keys that stay; open ones are never swept.
    for (const id of ['ses_before', 'ses_erased', 'ses_after']) {
      await recording.openSession({ id, principal: alice, connection, via: 'proxy', clientAddress: '127.0.0.1' });
    }
    await recording.closeSession('ses_erased', 'idle');
    const wrapped = (await store.getSessionKey('ses_erased'))!.wrapped;
    const kept = (await store.getSessionKey('ses_after'))!.wrapped;
    const index = join(dir, INDEX_FILE);
    const onDisk = async () => Buffer.concat([await bytesOf(index), await bytesOf(`${index}-wal`)]);
    expect((await onDisk()).includes(wrapped)).toBe(true);

    expect(await recording.sweep(Date.now() + 31 * DAY)).toBe(1);

    expect(await store.getSessionKey('ses_erased')).toBeUndefined();
    // The index is still open (the gateway runs): what its files hold now is what a copy of them would hold.
    const after = await onDisk();
    expect(after.includes(wrapped)).toBe(false);
    // A key that stays is still there: the search would have found the erased one.
    expect(after.includes(kept)).toBe(true);
  });

  it('zeroes the header of a format 1 file (its wrapped key) before removing it, so another link to the file reads zeros', async () => {
    const older = await olderFormatSession(1);
    const { row } = older;
    const { dir, store, recording } = await setUp(older.keyRing);
    await placeOlderSession(older, dir, store);
    const file = join(dir, row.file);

    // Another name for the same bytes, made before the sweep: what a snapshot or a forgotten link keeps.
    const other = join(dir, 'other-link.rec');
    await link(file, other);
    const header = (await readFile(other)).subarray(0, headerLength(await readFile(other)));
    expect(header.toString('utf8')).toContain('wrapped_key');

    expect(await recording.sweep(row.startedAt + 31 * DAY)).toBe(1);
    const handle = await open(other, 'r');
    try {
      const { buffer, bytesRead } = await handle.read(Buffer.alloc(header.length), 0, header.length, 0);
      expect(bytesRead).toBe(header.length);
      expect(buffer.equals(Buffer.alloc(header.length))).toBe(true);
    } finally {
      await handle.close();
    }
  });
});
