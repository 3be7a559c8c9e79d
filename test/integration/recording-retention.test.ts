import { randomBytes } from 'node:crypto';
import { access, copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { connectionSchema } from '../../server/config/schema.js';
import type { Principal } from '../../server/identity/principal.js';
import type { RecordingArchive } from '../../server/recording/archive/archive.js';
import { FsArchive } from '../../server/recording/archive/fs-archive.js';
import { KeyRing } from '../../server/recording/key-ring.js';
import { Recording } from '../../server/recording/recording.js';
import { loadOrCreateSigningKey } from '../../server/recording/signing-key.js';
import { verifySession } from '../../server/recording/verify-session.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { olderFormatSession, placeOlderSession } from '../helpers/older-format-session.js';
import { dirSource } from '../helpers/stored-sessions.js';

const alice: Principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };
const connection = connectionSchema.parse({ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:1', allow_groups: ['ml-eng'] });
const DAY = 86_400_000;

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

async function setUp(options: { archive?: (dir: string) => RecordingArchive; keyRing?: KeyRing } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-retention-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const store = new SqliteStore({ file: join(dir, 'index.sqlite') });
  onTestFinished(() => store.close());
  const keyRing = options.keyRing ?? new KeyRing([{ id: 'default', key: randomBytes(32) }]);
  const signingKey = await loadOrCreateSigningKey(dir);
  const recording = await Recording.open({ dir, store, keyRing, signingKey, retentionDays: 30, ...(options.archive === undefined ? {} : { archive: options.archive(dir) }) });
  onTestFinished(() => recording.close());
  return { dir, store, keyRing, signingKey, recording };
}

describe('retention', () => {
  it('erases sealed sessions past retention_days by deleting their key from the index, then removes the file and the row; open sessions stay', async () => {
    const { dir, store, keyRing, signingKey, recording } = await setUp();
    for (const id of ['ses_old', 'ses_open']) await recording.openSession({ id, principal: alice, connection, via: 'proxy', clientAddress: '127.0.0.1' });
    await recording.closeSession('ses_old', 'idle');
    const old = (await store.getSession('ses_old'))!;
    expect(old.status).toBe('closed');
    const oldFile = join(dir, old.file);
    expect(await exists(oldFile)).toBe(true);
    expect(await store.getSessionKey('ses_old')).toMatchObject({ keyId: 'default' });

    // A copy of the file kept elsewhere (a backup, a replica): it opens while the key exists.
    const backup = join(dir, 'backup', 'ses_old.rec');
    await mkdir(dirname(backup));
    await copyFile(oldFile, backup);
    const backupVerdict = () => verifySession(dirSource(dir, keyRing, store), 'backup/ses_old.rec', { publicKey: signingKey.publicKey });
    expect((await backupVerdict()).ok).toBe(true);

    // Nothing is 30 days old yet.
    expect(await recording.sweep()).toBe(0);
    expect(await exists(oldFile)).toBe(true);

    // 31 days later.
    expect(await recording.sweep(Date.now() + 31 * DAY)).toBe(1);
    expect(await exists(oldFile)).toBe(false);
    expect(await store.getSession('ses_old')).toBeUndefined();
    expect(await store.getSessionKey('ses_old')).toBeUndefined();
    // The copy is still there, byte for byte, and no longer opens: the erasure reached it too.
    expect(await exists(backup)).toBe(true);
    const after = await backupVerdict();
    expect(after.ok).toBe(false);
    expect(after.problems).toEqual([expect.objectContaining({ kind: 'key', message: expect.stringContaining('holds no data key for session ses_old') })]);
    // The open session is never swept, and keeps its key.
    expect((await store.getSession('ses_open'))?.status).toBe('open');
    expect(await store.getSessionKey('ses_open')).toBeDefined();
  });

  it('has erased a session even when removing its file fails: the key goes first', async () => {
    let failDelete = true;
    const { dir, store, keyRing, signingKey, recording } = await setUp({
      archive: (root) => {
        const fs = new FsArchive({ root });
        return {
          get: (name) => fs.get(name),
          range: (name, offset, length) => fs.range(name, offset, length),
          put: (name, body) => fs.put(name, body),
          list: (prefix, options) => fs.list(prefix, options),
          adoptFile: (path, name) => fs.adoptFile(path, name),
          delete: async (name) => {
            if (failDelete) throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
            return fs.delete(name);
          },
        };
      },
    });
    await recording.openSession({ id: 'ses_old', principal: alice, connection, via: 'proxy', clientAddress: '127.0.0.1' });
    await recording.closeSession('ses_old', 'idle');
    const file = (await store.getSession('ses_old'))!.file;
    await expect(recording.sweep(Date.now() + 31 * DAY)).rejects.toThrow(/EIO/);
    // The file and the row are still there; what they hold cannot be read by anyone.
    expect(await exists(join(dir, file))).toBe(true);
    expect(await store.getSessionKey('ses_old')).toBeUndefined();
    const verdict = await verifySession(dirSource(dir, keyRing, store), file, { publicKey: signingKey.publicKey });
    expect(verdict.problems).toEqual([expect.objectContaining({ kind: 'key' })]);
    // The next sweep finishes the job.
    failDelete = false;
    expect(await recording.sweep(Date.now() + 31 * DAY)).toBe(1);
    expect(await exists(join(dir, file))).toBe(false);
    expect(await store.getSession('ses_old')).toBeUndefined();
  });

  it('destroys a format 1 session (its key in its own header) by removing its file', async () => {
    const older = await olderFormatSession(1);
    const { row } = older;
    const { dir, store, recording } = await setUp({ keyRing: older.keyRing });
    await placeOlderSession(older, dir, store);
    expect(await recording.sweep(row.startedAt + 31 * DAY)).toBe(1);
    expect(await exists(join(dir, row.file))).toBe(false);
    expect(await store.getSession(row.id)).toBeUndefined();
  });
});
