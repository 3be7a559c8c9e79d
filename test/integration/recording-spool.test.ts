/**
 * The spool and the archive as separate places, as they are with a remote archive: an open session is
 * appended in the local spool and read from there; sealed, it is handed to the archive (renamed when the
 * archive can adopt a local file, uploaded with `put` when it cannot) and the spool keeps nothing.
 */
import { randomBytes } from 'node:crypto';
import { access, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { connectionSchema } from '../../server/config/schema.js';
import type { Principal } from '../../server/identity/principal.js';
import type { RecordingArchive } from '../../server/recording/archive/archive.js';
import { FsArchive } from '../../server/recording/archive/fs-archive.js';
import { KeyRing } from '../../server/recording/key-ring.js';
import { Recording } from '../../server/recording/recording.js';
import { readSession } from '../../server/recording/session-reader.js';
import { loadOrCreateSigningKey } from '../../server/recording/signing-key.js';
import { verifySession } from '../../server/recording/verify-session.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';

const alice: Principal = { sub: 'alice', groups: ['ml-eng'], roles: [], expiresAt: 4_000_000_000, issuer: 'https://idp.test' };
const connection = connectionSchema.parse({ name: 'llm', type: 'http', upstream: 'http://127.0.0.1:1', allow_groups: ['ml-eng'] });

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** Every file under `dir`, relative to it. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath, e.name).slice(dir.length + 1));
  return out.sort();
}

/** The directory archive without `adoptFile`: what a bucket offers, so sealed files must be uploaded. */
function uploadOnly(archive: FsArchive, puts: string[]): RecordingArchive {
  return {
    get: (name) => archive.get(name),
    range: (name, offset, length) => archive.range(name, offset, length),
    list: (prefix, options) => archive.list(prefix, options),
    delete: (name) => archive.delete(name),
    put: async (name, body) => {
      puts.push(name);
      return archive.put(name, body);
    },
  };
}

/** A store, and a spool and an archive in directories of their own. */
async function spoolApart() {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-spool-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const store = new SqliteStore({ file: join(dir, 'index.sqlite') });
  onTestFinished(() => store.close());
  return {
    dir,
    store,
    spoolDir: join(dir, 'spool'),
    archiveDir: join(dir, 'archive'),
    keyRing: new KeyRing([{ id: 'default', key: randomBytes(32) }]),
    signingKey: await loadOrCreateSigningKey(dir),
  };
}

for (const kind of ['adopting', 'upload-only'] as const) {
  describe(`a spool apart from a ${kind} archive`, () => {
    it('appends open sessions in the spool, where readers find them, and hands each to the archive when sealed', async () => {
      const { dir, store, spoolDir, archiveDir, keyRing, signingKey } = await spoolApart();
      const puts: string[] = [];
      const fs = new FsArchive({ root: archiveDir });
      const recording = await Recording.open({ dir, store, spoolDir, archive: kind === 'adopting' ? fs : uploadOnly(fs, puts), keyRing, signingKey });
      onTestFinished(() => recording.close());

      const session = await recording.openSession({ id: 'ses_spooled', principal: alice, connection, via: 'proxy', clientAddress: '127.0.0.1' });
      await session.append('exchange.error', { exchange: 'req_1', code: 'ERR_UPSTREAM_UNAVAILABLE', message: 'down', after_response_head: false });
      const { file } = (await store.getSession('ses_spooled'))!;
      expect(await exists(join(spoolDir, file))).toBe(true);
      expect(await exists(join(archiveDir, file))).toBe(false);
      await expect(fs.get(file)).rejects.toMatchObject({ code: 'ARCHIVE_NOT_FOUND' });
      // Open, it is read from the spool through the recording's source.
      const open = await verifySession(recording.source, file, { publicKey: signingKey.publicKey });
      expect(open).toMatchObject({ status: 'interrupted', records: 2, lastGoodSeq: 1 });

      await recording.closeSession('ses_spooled', 'idle');
      expect(await filesUnder(spoolDir)).toEqual([]);
      expect(await filesUnder(archiveDir)).toEqual([file]);
      expect(puts).toEqual(kind === 'adopting' ? [] : [file]);
      const sealed = (await store.getSession('ses_spooled'))!;
      const verdict = await verifySession(recording.source, file, { publicKey: signingKey.publicKey, expect: { sessionId: sealed.id, records: sealed.records, finalHash: sealed.finalHash } });
      expect(verdict).toMatchObject({ ok: true, status: 'intact' });
      const types = [];
      for await (const e of readSession(recording.source, file)) types.push(e.type);
      expect(types).toEqual(['session.start', 'exchange.error', 'session.end', 'session.checkpoint']);
    });
  });
}

it('a session left open by a crash is handed from the spool to the archive at the next start', async () => {
  const { dir, store, spoolDir, archiveDir, keyRing, signingKey } = await spoolApart();
  const options = { dir, store, spoolDir, replica: 'r1', keyRing, signingKey };
  const first = await Recording.open({ ...options, archive: new FsArchive({ root: archiveDir }) });
  onTestFinished(() => first.close());
  await first.openSession({ id: 'ses_crashed', principal: alice, connection, via: 'proxy', clientAddress: '127.0.0.1' });
  const { file } = (await store.getSession('ses_crashed'))!;
  // The first "crashed": never closed. The next start finds the session open.
  const second = await Recording.open({ ...options, archive: new FsArchive({ root: archiveDir }) });
  onTestFinished(() => second.close());
  expect((await store.getSession('ses_crashed'))?.status).toBe('interrupted');
  expect(await exists(join(spoolDir, file))).toBe(false);
  expect(await filesUnder(archiveDir)).toEqual([file]);
  expect((await verifySession(second.source, file, { publicKey: options.signingKey.publicKey })).status).toBe('interrupted');
});
